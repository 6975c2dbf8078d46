// Where a model id's weights are, in the order the reference app's download scheme looks: an
// exported bundle, then a Hugging Face checkpoint in the HF cache, then the Hub. Only looks at the
// disk, so it is cheap and unit-testable; the registry acts on the answer.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace pg::registry {

// MODELS_DIR layout:
//   bundles/<id>/manifest.json            exported bundles (ids may hold one '/')
//   huggingface/models--org--name/        the HF hub cache (compose mounts ~/.cache/huggingface/hub
//   here) vae-oid.npz                           big_vision's VAE, fetched once
struct ModelsDir {
  std::string root;
  std::string BundleDir(const std::string& id) const { return root + "/bundles/" + id; }
  std::string HfCacheDir() const { return root + "/huggingface"; }
  std::string HfRepoDir(const std::string& id) const;
  std::string VaePath() const { return root + "/vae-oid.npz"; }
};

enum class SourceKind { kBundle, kHfCache, kHub };

struct Resolution {
  SourceKind kind = SourceKind::kHub;
  std::string path;  // the bundle folder, the models--org--name folder, or (kHub) where it will go
};

// Resolves a validated id. A HF cache folder counts only if refs/main names a snapshot that holds a
// config.json (the downloader writes refs/main last, so an interrupted download is resumed, not
// used).
Resolution Resolve(const ModelsDir& dir, const std::string& id);

// The source as ListModels reports it to clients: "bundle", "hf-cache" or "hub" (no server path or
// Hub URL: those are the operator's, and the log has them).
std::string DescribeSource(const Resolution& r);

// OK when every entry of the bundle folder `dir` (recursively) is a regular file or a folder, or a
// symlink to a regular file inside the bundle; FailedPrecondition naming the entry (relative to the
// bundle) otherwise. Checked with lstat before the loader opens anything: a FIFO or a device in a
// bundle would block the loader's open() forever, leaving the model LOADING.
absl::Status CheckBundleFiles(const std::string& dir);

// Sum of the sizes of the regular files directly in `dir` (a bundle's size on disk); 0 if
// unreadable.
int64_t FolderBytes(const std::string& dir);

}  // namespace pg::registry
