#include "server/registry/registry.h"

#include <pthread.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "server/common/log.h"
#include "server/common/status.h"
#include "server/registry/model_id.h"

namespace pg::registry {
namespace fs = std::filesystem;

const char* StateName(ModelState state) {
  switch (state) {
    case ModelState::kAvailable:
      return "available";
    case ModelState::kLoading:
      return "loading";
    case ModelState::kReady:
      return "ready";
    case ModelState::kFailed:
      return "failed";
  }
  return "?";
}

ModelRegistry::ModelRegistry(RegistryOptions options)
    : options_(std::move(options)), dir_{options_.models_dir} {}

ModelRegistry::~ModelRegistry() {
  // Loads still running are cancelled (they stop at their next check) and queued ones dropped, so
  // a shutdown does not wait for a download or an export; a finishing load may start no other.
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued_loads_.clear();
    for (auto& [id, e] : entries_) {
      if (e.state == ModelState::kLoading && e.progress) e.progress->Cancel();
    }
  }
  for (;;) {
    std::map<uint64_t, std::thread> loaders;
    std::vector<std::thread> finished;
    {
      std::lock_guard<std::mutex> lock(mu_);
      loaders.swap(loaders_);
      finished.swap(finished_loaders_);
    }
    if (loaders.empty() && finished.empty()) return;
    for (auto& [serial, t] : loaders) t.join();
    for (auto& t : finished) t.join();
  }
}

void ModelRegistry::SetListener(Listener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = std::move(listener);
}

absl::StatusOr<std::string> ModelRegistry::CanonicalId(const std::string& id) const {
  const std::string& canonical = id.empty() ? options_.default_model : id;
  RETURN_IF_ERROR(ValidateModelId(canonical));
  return canonical;
}

absl::Status ModelRegistry::CheckAllowed(const std::string& id) const {
  if (id == options_.default_model || MatchesAllowedModels(options_.allowed_models, id)) {
    return absl::OkStatus();
  }
  if (Resolve(dir_, id).kind == SourceKind::kBundle) return absl::OkStatus();
  return WithPrivateDetail(
      absl::NotFoundError(absl::StrCat("model ", id, " is not available on this server")),
      "not matched by --allowed_models and no bundle of that name under MODELS_DIR/bundles");
}

absl::Status ModelRegistry::CheckServable(const std::string& raw_id) const {
  ASSIGN_OR_RETURN(const std::string id, CanonicalId(raw_id));
  return CheckAllowed(id);
}

void ModelRegistry::Notify(const std::vector<std::pair<std::string, ModelState>>& events) {
  Listener listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    listener = listener_;
  }
  if (!listener) return;
  for (const auto& [id, state] : events) listener(id, state);
}

absl::Status ModelRegistry::StartLoadLocked(const std::string& id, Entry& e) {
  const bool is_default = id == options_.default_model;
  const bool slot_free = running_loads_ < std::max(1, options_.max_concurrent_loads);
  if (!slot_free && !is_default &&
      static_cast<int>(queued_loads_.size()) >= std::max(0, options_.max_queued_loads)) {
    return absl::ResourceExhaustedError(
        "too many model loads in progress on this server; try again later");
  }
  e.state = ModelState::kLoading;
  e.error.clear();
  e.error_code = absl::StatusCode::kOk;
  ++e.generation;
  e.progress = std::make_shared<LoadProgress>();
  if (slot_free) {
    SpawnLocked(id, e.progress);
  } else {
    e.progress->SetPhase("queued");
    if (is_default) {
      queued_loads_.push_front(id);
    } else {
      queued_loads_.push_back(id);
    }
  }
  return absl::OkStatus();
}

void ModelRegistry::SpawnLocked(const std::string& id,
                                const std::shared_ptr<LoadProgress>& progress) {
  // Threads in finished_loaders_ are past their last use of mu_: joining them here cannot block.
  for (auto& t : finished_loaders_) t.join();
  finished_loaders_.clear();
  ++running_loads_;
  progress->SetPhase("resolve");  // under the lock: a load given a slot is no longer "queued"
  const uint64_t serial = ++loader_serial_;
  loaders_.emplace(serial, std::thread(&ModelRegistry::LoadThread, this, id, serial, progress));
}

void ModelRegistry::FailLocked(Entry& e, const absl::Status& status) {
  e.state = ModelState::kFailed;
  e.model.reset();
  e.progress.reset();
  e.error = std::string(status.message());
  e.error_code = status.code();
  e.failed_order = ++failed_serial_;
}

absl::Status ModelRegistry::ClientSafe(const absl::Status& status, const std::string& id) const {
  // Loaders below the registry (manifest, weights, tokenizer) name the files they read; a client
  // sees them relative to the bundle, and never the models folder, the HF cache or a URL.
  std::error_code ec;
  const auto absolute = [&](const std::string& p) { return fs::absolute(p, ec).string(); };
  std::vector<std::pair<std::string, std::string>> prefixes = {
      {dir_.BundleDir(id) + "/", ""},
      {absolute(dir_.BundleDir(id)) + "/", ""},
      {dir_.HfRepoDir(id), "the HF cache"},
      {absolute(dir_.HfRepoDir(id)), "the HF cache"},
      {absolute(options_.models_dir), "MODELS_DIR"},
      {options_.vae_url, "the VAE URL"},
      {options_.hub.endpoint, "the Hub"}};
  std::sort(prefixes.begin(), prefixes.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  std::string message(status.message());
  for (const auto& [from, to] : prefixes) {
    if (from.size() < 2) continue;
    for (size_t at = message.find(from); at != std::string::npos; at = message.find(from, at)) {
      message.replace(at, from.size(), to);
      at += to.size();
    }
  }
  if (message == status.message()) return status;
  std::string detail = PrivateDetail(status);
  return WithPrivateDetail(absl::Status(status.code(), message),
                           detail.empty() ? std::string(status.message()) : detail);
}

void ModelRegistry::PruneFailedLocked() {
  std::vector<std::map<std::string, Entry>::iterator> failed;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->second.state == ModelState::kFailed && it->second.waiters == 0) failed.push_back(it);
  }
  const size_t keep = static_cast<size_t>(std::max(0, options_.max_failed_models));
  if (failed.size() <= keep) return;
  std::sort(failed.begin(), failed.end(), [](const auto& a, const auto& b) {
    return a->second.failed_order < b->second.failed_order;
  });
  for (size_t i = 0; i + keep < failed.size(); ++i) entries_.erase(failed[i]);
}

absl::StatusOr<std::shared_ptr<const engine::Segmenter>> ModelRegistry::Get(
    const std::string& raw_id, Clock::time_point deadline, const std::function<bool()>& cancelled) {
  ASSIGN_OR_RETURN(const std::string id, CanonicalId(raw_id));
  RETURN_IF_ERROR(CheckAllowed(id));
  std::unique_lock<std::mutex> lock(mu_);
  auto [it, created] = entries_.try_emplace(id);
  Entry& e = it->second;
  if (e.state == ModelState::kAvailable || e.state == ModelState::kFailed) {
    // A failed load is retried by the next request.
    if (absl::Status s = StartLoadLocked(id, e); !s.ok()) {
      if (created) entries_.erase(it);  // a refused id leaves no entry
      return s;
    }
  }
  // Entries with waiters are never erased, so `e` stays valid while this call waits.
  ++e.waiters;
  struct Leave {
    ModelRegistry* r;
    Entry& e;
    ~Leave() {
      --e.waiters;
      r->PruneFailedLocked();
    }
  } leave{this, e};
  for (;;) {
    if (e.state == ModelState::kReady) {
      e.last_used = Clock::now();
      return e.model;
    }
    if (e.state == ModelState::kFailed) {  // the load this call started or waited for
      // Keep the cause's code: an unknown repo stays NOT_FOUND, a missing token PERMISSION_DENIED,
      // a load cancelled by UnloadModel ABORTED. Anything else (a bad bundle, a failed export) is
      // the server's state, not the request's fault.
      const absl::StatusCode code = e.error_code == absl::StatusCode::kNotFound ||
                                            e.error_code == absl::StatusCode::kPermissionDenied ||
                                            e.error_code == absl::StatusCode::kUnavailable ||
                                            e.error_code == absl::StatusCode::kAborted
                                        ? e.error_code
                                        : absl::StatusCode::kFailedPrecondition;
      return absl::Status(code, absl::StrCat("model ", id, " failed to load: ", e.error));
    }
    if (e.state == ModelState::kAvailable) {  // unloaded while we waited: load it again
      RETURN_IF_ERROR(StartLoadLocked(id, e));
    }
    if (cancelled && cancelled()) return absl::CancelledError("request cancelled");
    const auto now = Clock::now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded while model ", id, " is loading"));
    }
    // Short waits so cancellation is noticed without a callback into the registry.
    changed_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(50)));
  }
}

absl::StatusOr<ModelInfo> ModelRegistry::Load(const std::string& raw_id, Clock::time_point deadline,
                                              const std::function<bool()>& cancelled) {
  ASSIGN_OR_RETURN(const std::string id, CanonicalId(raw_id));
  auto model = Get(id, deadline, cancelled);
  std::lock_guard<std::mutex> lock(mu_);
  if (!model.ok()) return model.status();
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::AbortedError(absl::StrCat("model ", id, " was unloaded"));
  return InfoLocked(id, it->second);
}

absl::StatusOr<ModelInfo> ModelRegistry::Unload(const std::string& raw_id) {
  ASSIGN_OR_RETURN(const std::string id, CanonicalId(raw_id));
  ModelInfo info;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.state == ModelState::kAvailable ||
        it->second.state == ModelState::kFailed) {
      return absl::NotFoundError(absl::StrCat("model ", id, " is not loaded"));
    }
    Entry& e = it->second;
    if (e.state == ModelState::kLoading) {
      const absl::Status cancelled = absl::AbortedError(
          absl::StrCat("model ", id, " was loading; its load is cancelled (load it again later)"));
      auto queued = std::find(queued_loads_.begin(), queued_loads_.end(), id);
      if (queued != queued_loads_.end()) {  // not started: nothing to stop
        queued_loads_.erase(queued);
        FailLocked(e, absl::AbortedError("the load was cancelled by UnloadModel"));
        log::Info("queued model load cancelled", {{"model", id}});
        changed_.notify_all();
      } else {
        // The load thread stops at its next check (download, export, model load) and ends FAILED.
        e.progress->Cancel();
        log::Info("cancelling model load", {{"model", id}});
      }
      return cancelled;
    }
    e.model.reset();  // in-flight requests hold their own reference
    e.state = ModelState::kAvailable;
    info = InfoLocked(id, e);
  }
  log::Info("model unloaded", {{"model", id}});
  changed_.notify_all();
  Notify({{id, ModelState::kAvailable}});
  return info;
}

absl::Status ModelRegistry::EnsureVae() {
  std::lock_guard<std::mutex> lock(vae_mu_);
  std::error_code ec;
  if (fs::is_regular_file(dir_.VaePath(), ec)) return absl::OkStatus();
  log::Info("fetching the VAE", {{"url", options_.vae_url}});
  if (LoadProgress* p = CurrentLoadProgress()) p->SetPhase("download_vae");
  absl::Status s = DownloadFile(options_.hub, options_.vae_url, dir_.VaePath(), "vae-oid.npz");
  if (s.ok() || s.code() == absl::StatusCode::kAborted ||
      s.code() == absl::StatusCode::kDeadlineExceeded) {
    return s;
  }
  // The VAE is the server's own dependency: a client is told which part is missing, not the URL,
  // and not NOT_FOUND (which would say its model does not exist).
  return WithPrivateDetail(
      absl::UnavailableError("the mask decoder (vae-oid.npz) could not be downloaded"),
      absl::StrCat(s.message(), "; ", PrivateDetail(s)));
}

absl::StatusOr<std::string> ModelRegistry::Materialize(const std::string& id, std::string* source) {
  Resolution r = Resolve(dir_, id);
  *source = DescribeSource(r);
  if (r.kind == SourceKind::kBundle) return r.path;
  if (r.kind == SourceKind::kHub) {
    log::Info("model not on disk; downloading it",
              {{"model", id}, {"models_dir", options_.models_dir}, {"hub", options_.hub.endpoint}});
    if (LoadProgress* p = CurrentLoadProgress()) p->SetPhase("download");
    RETURN_IF_ERROR(DownloadRepo(options_.hub, id, r.path));
  }
  RETURN_IF_ERROR(EnsureVae());
  const std::string bundle = dir_.BundleDir(id);
  if (LoadProgress* p = CurrentLoadProgress()) p->SetPhase("export");
  RETURN_IF_ERROR(RunExporter(options_.exporter, r.path, dir_.VaePath(), id, bundle));
  return bundle;
}

void ModelRegistry::LoadThread(std::string id, uint64_t serial,
                               std::shared_ptr<LoadProgress> progress) {
  const auto t0 = Clock::now();
  // Named, so that the thread count of loads is visible in /proc (tests/faults check it is
  // bounded).
  pthread_setname_np(pthread_self(), "pg-model-load");
  log::Info("loading model", {{"model", id}});
  progress->SetTimeout(options_.load_timeout);
  ScopedLoadProgress scoped_progress(progress.get());
  Notify({{id, ModelState::kLoading}});
  std::string source;
  absl::StatusOr<std::unique_ptr<engine::Segmenter>> model =
      [&]() -> absl::StatusOr<std::unique_ptr<engine::Segmenter>> {
    RETURN_IF_ERROR(progress->StopStatus());
    ASSIGN_OR_RETURN(const std::string bundle, Materialize(id, &source));
    RETURN_IF_ERROR(CheckBundleFiles(bundle));
    RETURN_IF_ERROR(progress->StopStatus());
    progress->SetPhase("load");
    // The model load itself cannot be interrupted; its result is dropped if the load was
    // cancelled or timed out meanwhile.
    ASSIGN_OR_RETURN(auto segmenter, engine::Segmenter::Create(bundle, options_.engine));
    RETURN_IF_ERROR(progress->StopStatus());
    return segmenter;
  }();
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  // Done loading (a thread started below for a queued load takes this name at its clone).
  pthread_setname_np(pthread_self(), "pg-load-ending");
  std::vector<std::pair<std::string, ModelState>> events;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[id];  // a loading entry is never erased
    e.source = source;
    if (model.ok()) {
      e.progress.reset();
      e.model = std::move(*model);
      e.state = ModelState::kReady;
      e.load_ms = ms;
      e.last_used = Clock::now();
      e.bytes = FolderBytes(dir_.BundleDir(id));
      log::Info("model ready", {{"model", id}, {"load_ms", ms}, {"bytes", e.bytes}});
      EvictLocked(id, &events);
    } else {
      const absl::Status e_status = ClientSafe(model.status(), id);
      FailLocked(e, e_status);
      log::Error("model load failed", {{"model", id},
                                       {"error", e.error},
                                       {"detail", PrivateDetail(e_status)},
                                       {"load_ms", ms}});
    }
    events.insert(events.begin(), {id, e.state});
    // This slot goes to the next queued load (unless UnloadModel cancelled it meanwhile).
    --running_loads_;
    while (running_loads_ < std::max(1, options_.max_concurrent_loads) && !queued_loads_.empty()) {
      const std::string next = queued_loads_.front();
      queued_loads_.pop_front();
      auto it = entries_.find(next);
      if (it != entries_.end() && it->second.state == ModelState::kLoading) {
        SpawnLocked(next, it->second.progress);
      }
    }
    PruneFailedLocked();
  }
  changed_.notify_all();
  Notify(events);
  // Last use of mu_: hand this thread over to be joined (see loaders_).
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = loaders_.find(serial); it != loaders_.end()) {
    finished_loaders_.push_back(std::move(it->second));
    loaders_.erase(it);
  }
}

void ModelRegistry::EvictLocked(const std::string& keep,
                                std::vector<std::pair<std::string, ModelState>>* events) {
  for (;;) {
    int ready = 0;
    std::map<std::string, Entry>::iterator lru = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.state != ModelState::kReady) continue;
      ++ready;
      if (it->first != keep &&
          (lru == entries_.end() || it->second.last_used < lru->second.last_used)) {
        lru = it;
      }
    }
    if (ready <= std::max(1, options_.max_loaded_models) || lru == entries_.end()) return;
    log::Info("unloading least recently used model", {{"model", lru->first}});
    lru->second.model.reset();
    lru->second.state = ModelState::kAvailable;
    events->push_back({lru->first, ModelState::kAvailable});
  }
}

ModelInfo ModelRegistry::InfoLocked(const std::string& id, const Entry& e) const {
  ModelInfo info;
  info.id = id;
  info.state = e.state;
  info.error = e.error;
  info.source = e.source;
  info.bytes = e.bytes;
  info.load_ms = e.load_ms;
  if (e.progress && e.state == ModelState::kLoading) info.progress = e.progress->Get();
  if (e.model) {
    info.device = e.model->model().device().str();
    info.dtype = std::string(c10::toString(e.model->model().dtype()));
  }
  return info;
}

std::vector<ModelInfo> ModelRegistry::List() {
  std::map<std::string, ModelInfo> out;
  // What is on disk: bundles/<id> and bundles/<org>/<name>, and HF cache folders models--org--name.
  std::error_code ec;
  auto add_disk = [&](const std::string& id) {
    if (!ValidateModelId(id).ok() || out.count(id)) return;
    Resolution r = Resolve(dir_, id);
    if (r.kind == SourceKind::kHub) return;
    // An HF cache folder outside --allowed_models cannot be served: not listed either.
    if (r.kind == SourceKind::kHfCache && !CheckAllowed(id).ok()) return;
    ModelInfo info;
    info.id = id;
    info.source = DescribeSource(r);
    info.bytes = r.kind == SourceKind::kBundle ? FolderBytes(r.path) : 0;
    out[id] = info;
  };
  const std::string bundles = options_.models_dir + "/bundles";
  for (const auto& e : fs::directory_iterator(bundles, ec)) {
    if (!e.is_directory(ec)) continue;
    const std::string name = e.path().filename().string();
    if (fs::is_regular_file(e.path() / "manifest.json", ec)) {
      add_disk(name);
      continue;
    }
    for (const auto& sub : fs::directory_iterator(e.path(), ec)) {
      if (fs::is_regular_file(sub.path() / "manifest.json", ec)) {
        add_disk(name + "/" + sub.path().filename().string());
      }
    }
  }
  for (const auto& e : fs::directory_iterator(dir_.HfCacheDir(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("models--", 0) != 0) continue;
    std::string id = name.substr(8);
    const size_t sep = id.find("--");
    if (sep != std::string::npos) id.replace(sep, 2, "/");
    add_disk(id);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, e] : entries_) {
      ModelInfo info = InfoLocked(id, e);
      if (info.source.empty() && out.count(id)) info.source = out[id].source;
      if (info.bytes == 0 && out.count(id)) info.bytes = out[id].bytes;
      out[id] = info;
    }
  }
  std::vector<ModelInfo> list;
  for (auto& [id, info] : out) list.push_back(std::move(info));
  return list;
}

std::vector<std::pair<std::string, std::shared_ptr<const engine::Segmenter>>>
ModelRegistry::Loaded() {
  std::vector<std::pair<std::string, std::shared_ptr<const engine::Segmenter>>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, e] : entries_) {
    if (e.state == ModelState::kReady && e.model) out.emplace_back(id, e.model);
  }
  return out;
}

}  // namespace pg::registry
