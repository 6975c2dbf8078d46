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

// Human-readable source, as ListModels reports it ("bundle:DIR", "hf-cache:DIR", "hub:URL").
std::string DescribeSource(const Resolution& r, const std::string& hub_endpoint,
                           const std::string& id);

// Sum of the sizes of the regular files directly in `dir` (a bundle's size on disk); 0 if
// unreadable.
int64_t FolderBytes(const std::string& dir);

}  // namespace pg::registry
