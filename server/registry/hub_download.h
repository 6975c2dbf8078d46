// Downloads a Hugging Face repo (or one file, like big_vision's vae-oid.npz) the way
// huggingface_hub does, into the HF cache layout (blobs/, snapshots/<commit>/, refs/main), so a
// user's existing cache is reused and what the server fetches is reusable by other HF tools.
// Downloads go to "<blob>.incomplete" and are renamed when complete (no half file is ever visible
// under its final name) and resume with a Range request after an interruption.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace pg::registry {

struct HubOptions {
  std::string endpoint = "https://huggingface.co";
  std::string token;  // sent as "Authorization: Bearer" to the endpoint only; empty = anonymous
  std::string revision = "main";
  int attempts = 4;  // per file; each retry resumes where the last one stopped
  long connect_timeout_ms = 15000;
  long low_speed_timeout_s = 60;  // abort a transfer slower than 1 KB/s for this long (then resume)
};

// The message the reference app gives when the Hub wants a token (401/403 for gated or private
// repos).
extern const char kAuthenticationMessage[];

// Downloads the files a PaliGemma checkpoint needs (config, tokenizer, preprocessor config,
// safetensors index and shards) of repo `id` into `repo_dir` (HF cache folder models--org--name).
// Errors: PermissionDenied with kAuthenticationMessage for 401/403, NotFound for an unknown repo,
// Unavailable for network failures that outlast the retries.
absl::Status DownloadRepo(const HubOptions& options, const std::string& id,
                          const std::string& repo_dir);

// Downloads `url` to `path` atomically and resumably (via "path.incomplete"); no token is sent.
absl::Status DownloadFile(const HubOptions& options, const std::string& url,
                          const std::string& path);

}  // namespace pg::registry
