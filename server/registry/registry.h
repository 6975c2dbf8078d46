// The model registry: which models exist, loading them (resolve -> download -> export -> load) and
// unloading them, separately from serving (TF Serving's manager/loader split). The service only
// asks for a ready model; lifecycle and resources live here.
//
// Rules: one load per model at a time (others wait for it, bounded by their deadline); a load runs
// on its own thread, so a waiter giving up never aborts it; a failed load is reported (ListModels,
// the waiters' error) and retried by the next request; past max_loaded_models the least recently
// used model is unloaded (requests still running on it keep it alive until they finish).
//
// Bounds, because a request names the model: an id outside allowed_models that is neither the
// default model nor a bundle on disk is refused (NotFound) before it is recorded or anything is
// fetched; at most max_concurrent_loads loads run at once and max_queued_loads wait for a slot
// (more get ResourceExhausted; the default model always gets a place, at the front); only the last
// max_failed_models failed entries are kept; a load stops past load_timeout (at its next check:
// download, export, before and after the model load) and UnloadModel of a loading model cancels it
// (Aborted) the same way.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/segmenter.h"
#include "server/registry/allowed_models.h"
#include "server/registry/exporter_runner.h"
#include "server/registry/hub_download.h"
#include "server/registry/load_progress.h"
#include "server/registry/resolver.h"

namespace pg::registry {

enum class ModelState { kAvailable, kLoading, kReady, kFailed };

struct ModelInfo {
  std::string id;
  ModelState state = ModelState::kAvailable;
  std::string error;  // why the last load failed (kFailed)
  std::string source;
  int64_t bytes = 0;
  std::string device, dtype;
  double load_ms = 0;
  LoadProgress::Snapshot progress;  // while kLoading: phase, file, bytes
};

struct RegistryOptions {
  std::string models_dir;
  std::string default_model = "google/paligemma2-3b-mix-448";
  engine::EngineOptions engine;
  int max_loaded_models = 1;
  HubOptions hub;
  ExporterOptions exporter;
  std::string vae_url = "https://storage.googleapis.com/big_vision/paligemma/vae-oid.npz";
  std::vector<std::string> allowed_models = {kDefaultAllowedModels};  // --allowed_models globs
  int max_failed_models = 32;
  int max_concurrent_loads = 2;
  int max_queued_loads = 16;
  std::chrono::seconds load_timeout{3600};
};

class ModelRegistry {
 public:
  using Clock = std::chrono::steady_clock;
  // Called (outside the registry's lock) whenever a model's state changes; the server updates
  // health.
  using Listener = std::function<void(const std::string& id, ModelState state)>;

  explicit ModelRegistry(RegistryOptions options);
  ~ModelRegistry();  // cancels loads in progress and waits for them to stop

  const std::string& default_model() const { return options_.default_model; }
  void SetListener(Listener listener);

  // The ready model `id` (empty = the default), starting its load if needed and waiting until it is
  // ready, it fails, `deadline` passes (DeadlineExceeded; the load goes on) or `cancelled()`
  // (Cancelled).
  absl::StatusOr<std::shared_ptr<const engine::Segmenter>> Get(
      const std::string& id, Clock::time_point deadline,
      const std::function<bool()>& cancelled = {});

  // Like Get, but answers with the model's state.
  absl::StatusOr<ModelInfo> Load(const std::string& id, Clock::time_point deadline,
                                 const std::function<bool()>& cancelled = {});

  // Drops the registry's reference; NotFound if it is not loaded. While it is loading, cancels the
  // load and answers Aborted: the entry ends FAILED ("cancelled") and the next request loads again.
  absl::StatusOr<ModelInfo> Unload(const std::string& id);

  // OK when a request may name `id` (empty = the default): the default model, an id matching
  // allowed_models, or a bundle on disk; else the NotFound (InvalidArgument for a malformed id)
  // that Get would answer. Callers check it first to keep refused ids out of their metric labels.
  absl::Status CheckServable(const std::string& id) const;

  // Known models: loaded/loading/failed ones plus bundles and HF cache folders found in MODELS_DIR.
  std::vector<ModelInfo> List();

  // The loaded models (for their live counters: scheduler, caches).
  std::vector<std::pair<std::string, std::shared_ptr<const engine::Segmenter>>> Loaded();

 private:
  struct Entry {
    ModelState state = ModelState::kAvailable;
    std::shared_ptr<const engine::Segmenter> model;
    std::string error, source;
    absl::StatusCode error_code = absl::StatusCode::kOk;
    int64_t bytes = 0;
    double load_ms = 0;
    Clock::time_point last_used;
    uint64_t generation = 0;  // bumped per load attempt, so waiters see a *new* failure
    std::shared_ptr<LoadProgress> progress;  // while kLoading (queued or running)
    int waiters = 0;                         // Get calls holding a reference: never erased then
    uint64_t failed_order = 0;               // when it failed, for keeping the last N
  };

  absl::StatusOr<std::string> CanonicalId(const std::string& id) const;
  absl::Status CheckAllowed(const std::string& id) const;
  absl::Status StartLoadLocked(const std::string& id, Entry& e);
  void SpawnLocked(const std::string& id, const std::shared_ptr<LoadProgress>& progress);
  void PruneFailedLocked();
  // `status` with server paths and internal URLs taken out of its message (kept as private detail).
  absl::Status ClientSafe(const absl::Status& status, const std::string& id) const;
  void FailLocked(Entry& e, const absl::Status& status);
  void LoadThread(std::string id, uint64_t serial, std::shared_ptr<LoadProgress> progress);
  // Resolve, download and export as needed; returns the bundle folder.
  absl::StatusOr<std::string> Materialize(const std::string& id, std::string* source);
  absl::Status EnsureVae();
  void EvictLocked(const std::string& keep,
                   std::vector<std::pair<std::string, ModelState>>* events);
  ModelInfo InfoLocked(const std::string& id, const Entry& e) const;
  void Notify(const std::vector<std::pair<std::string, ModelState>>& events);

  const RegistryOptions options_;
  const ModelsDir dir_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Entry> entries_;
  // Loads in progress by serial. A load that ends moves its own thread to finished_loaders_, which
  // the next StartLoadLocked (or the destructor) joins: a thread never joined keeps its stack
  // mapped (8 MB of address space, ~125 KB resident), so a stream of failed loads would grow
  // without bound.
  std::map<uint64_t, std::thread> loaders_;
  std::vector<std::thread> finished_loaders_;
  uint64_t loader_serial_ = 0;
  int running_loads_ = 0;
  std::deque<std::string> queued_loads_;  // ids in kLoading waiting for a load slot
  uint64_t failed_serial_ = 0;
  Listener listener_;
  std::mutex vae_mu_;  // one VAE download at a time
};

const char* StateName(ModelState state);

}  // namespace pg::registry
