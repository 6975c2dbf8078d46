// The model registry: which models exist, loading them (resolve -> download -> export -> load) and
// unloading them, separately from serving (TF Serving's manager/loader split). The service only
// asks for a ready model; lifecycle and resources live here.
//
// Rules: one load per model at a time (others wait for it, bounded by their deadline); a load runs
// on its own thread, so a waiter giving up never aborts it; a failed load is reported (ListModels,
// the waiters' error) and retried by the next request; past max_loaded_models the least recently
// used model is unloaded (requests still running on it keep it alive until they finish).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/segmenter.h"
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
};

class ModelRegistry {
 public:
  using Clock = std::chrono::steady_clock;
  // Called (outside the registry's lock) whenever a model's state changes; the server updates
  // health.
  using Listener = std::function<void(const std::string& id, ModelState state)>;

  explicit ModelRegistry(RegistryOptions options);
  ~ModelRegistry();  // waits for loads in progress

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

  // Drops the registry's reference; NotFound if it is not loaded, FailedPrecondition while loading.
  absl::StatusOr<ModelInfo> Unload(const std::string& id);

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
    std::shared_ptr<LoadProgress> progress;  // while kLoading
  };

  absl::StatusOr<std::string> CanonicalId(const std::string& id) const;
  void StartLoadLocked(const std::string& id, Entry& e);
  void LoadThread(std::string id, uint64_t serial);
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
  Listener listener_;
  std::mutex vae_mu_;  // one VAE download at a time
};

const char* StateName(ModelState state);

}  // namespace pg::registry
