#include "server/registry/resolver.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/registry/model_id.h"

namespace pg::registry {
namespace fs = std::filesystem;

std::string ModelsDir::HfRepoDir(const std::string& id) const {
  return HfCacheDir() + "/" + HfCacheFolderName(id);
}

namespace {

// refs/main is written last by the downloader (and always by huggingface_hub), so a folder without
// it is an interrupted download that must be resumed, not exported.
bool HasSnapshotWithConfig(const std::string& repo_dir) {
  std::error_code ec;
  std::ifstream ref(repo_dir + "/refs/main");
  std::string revision;
  if (!ref || !std::getline(ref, revision) || revision.empty()) return false;
  return fs::is_regular_file(repo_dir + "/snapshots/" + revision + "/config.json", ec);
}

}  // namespace

Resolution Resolve(const ModelsDir& dir, const std::string& id) {
  std::error_code ec;
  const std::string bundle = dir.BundleDir(id);
  if (fs::is_regular_file(bundle + "/manifest.json", ec)) return {SourceKind::kBundle, bundle};
  const std::string repo = dir.HfRepoDir(id);
  if (fs::is_directory(repo + "/snapshots", ec) && HasSnapshotWithConfig(repo)) {
    return {SourceKind::kHfCache, repo};
  }
  return {SourceKind::kHub, repo};
}

std::string DescribeSource(const Resolution& r) {
  switch (r.kind) {
    case SourceKind::kBundle:
      return "bundle";
    case SourceKind::kHfCache:
      return "hf-cache";
    case SourceKind::kHub:
      break;
  }
  return "hub";
}

absl::Status CheckBundleFiles(const std::string& dir) {
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(dir, ec);
  if (ec) {
    return WithPrivateDetail(absl::FailedPreconditionError("the bundle folder cannot be read"),
                             dir + ": " + ec.message());
  }
  auto bad = [&](const fs::path& p, const std::string& what) {
    return WithPrivateDetail(absl::FailedPreconditionError(absl::StrCat(
                                 "the bundle holds ", p.lexically_relative(root).string(), ", ",
                                 what, "; only regular files can be loaded")),
                             p.string());
  };
  fs::recursive_directory_iterator it(root, ec), end;
  if (ec) {
    return WithPrivateDetail(absl::FailedPreconditionError("the bundle folder cannot be read"),
                             dir + ": " + ec.message());
  }
  for (; it != end; it.increment(ec)) {
    if (ec) {
      return WithPrivateDetail(absl::FailedPreconditionError("the bundle folder cannot be read"),
                               dir + ": " + ec.message());
    }
    const fs::path p = it->path();
    const fs::file_status st = fs::symlink_status(p, ec);  // lstat: never opens the entry
    if (fs::is_regular_file(st) || fs::is_directory(st)) continue;
    if (!fs::is_symlink(st))
      return bad(p, "which is not a regular file (a FIFO, socket or device)");
    const fs::path target = fs::weakly_canonical(p, ec);
    const fs::path rel = target.lexically_relative(root);
    if (ec || rel.empty() || *rel.begin() == "..")
      return bad(p, "a link leading out of the bundle");
    if (!fs::is_regular_file(fs::symlink_status(target, ec))) {
      return bad(p, "a link to something that is not a regular file");
    }
  }
  return absl::OkStatus();
}

int64_t FolderBytes(const std::string& dir) {
  std::error_code ec;
  int64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec)) total += static_cast<int64_t>(e.file_size(ec));
  }
  return total;
}

}  // namespace pg::registry
