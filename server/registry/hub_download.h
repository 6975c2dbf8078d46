// Downloads a Hugging Face repo (or one file, like big_vision's vae-oid.npz) the way
// huggingface_hub does, into the HF cache layout (blobs/, snapshots/<commit>/, refs/main), so a
// user's existing cache is reused and what the server fetches is reusable by other HF tools.
// Downloads go to "<blob>.incomplete" and are renamed when complete (no half file is ever visible
// under its final name) and resume with a Range request after an interruption within one load.
//
// Bounds (a repo named by a client must not exhaust memory, disk or the network): a file read into
// memory (config.json, the safetensors index, the optional JSON files) and any non-weights file
// is at most max_small_file_bytes; an index names at most max_shards shards; the repo's total size
// (from the HEAD answers, before anything is downloaded, and again while downloading) is at most
// max_download_bytes and must fit the free disk; a failed or refused download deletes what it
// wrote. A running registry load can stop a download (cancel, time limit) through LoadProgress.
#pragma once

#include <cstdint>
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
  int64_t max_small_file_bytes = int64_t{64} << 20;
  int max_shards = 64;
  int64_t max_download_bytes = int64_t{20} << 30;  // --max_download_gb
};

// The message the reference app gives when the Hub wants a token (401/403 for gated or private
// repos).
extern const char kAuthenticationMessage[];

// Downloads the files a PaliGemma checkpoint needs (config, tokenizer, preprocessor config,
// safetensors index and shards) of repo `id` into `repo_dir` (HF cache folder models--org--name).
// Errors: PermissionDenied with kAuthenticationMessage for 401/403, NotFound for an unknown repo,
// Unavailable for network failures that outlast the retries, FailedPrecondition for a repo past
// the bounds above; Aborted / DeadlineExceeded when the registry load stopped it. Messages name the
// repo and file, never the endpoint or a path (those are in the PrivateDetail).
absl::Status DownloadRepo(const HubOptions& options, const std::string& id,
                          const std::string& repo_dir);

// Downloads `url` to `path` atomically and resumably (via "path.incomplete"); no token is sent.
// `what` names the file in messages a client may see (the URL goes to the PrivateDetail only).
absl::Status DownloadFile(const HubOptions& options, const std::string& url,
                          const std::string& path, const std::string& what);

}  // namespace pg::registry
