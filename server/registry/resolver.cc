#include "server/registry/resolver.h"

#include <filesystem>
#include <fstream>

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

std::string DescribeSource(const Resolution& r, const std::string& hub_endpoint,
                           const std::string& id) {
  switch (r.kind) {
    case SourceKind::kBundle:
      return "bundle:" + r.path;
    case SourceKind::kHfCache:
      return "hf-cache:" + r.path;
    case SourceKind::kHub:
      break;
  }
  return "hub:" + hub_endpoint + "/" + id;
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
