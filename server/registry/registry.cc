#include "server/registry/registry.h"

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
  std::map<uint64_t, std::thread> loaders;
  std::vector<std::thread> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    loaders.swap(loaders_);
    finished.swap(finished_loaders_);
  }
  for (auto& [serial, t] : loaders) t.join();
  for (auto& t : finished) t.join();
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

void ModelRegistry::Notify(const std::vector<std::pair<std::string, ModelState>>& events) {
  Listener listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    listener = listener_;
  }
  if (!listener) return;
  for (const auto& [id, state] : events) listener(id, state);
}

void ModelRegistry::StartLoadLocked(const std::string& id, Entry& e) {
  e.state = ModelState::kLoading;
  e.error.clear();
  ++e.generation;
  // Threads in finished_loaders_ are past their last use of mu_: joining them here cannot block.
  for (auto& t : finished_loaders_) t.join();
  finished_loaders_.clear();
  const uint64_t serial = ++loader_serial_;
  loaders_.emplace(serial, std::thread(&ModelRegistry::LoadThread, this, id, serial));
}

absl::StatusOr<std::shared_ptr<const engine::Segmenter>> ModelRegistry::Get(
    const std::string& raw_id, Clock::time_point deadline, const std::function<bool()>& cancelled) {
  ASSIGN_OR_RETURN(const std::string id, CanonicalId(raw_id));
  std::unique_lock<std::mutex> lock(mu_);
  Entry& e = entries_[id];
  if (e.state == ModelState::kAvailable || e.state == ModelState::kFailed) {
    StartLoadLocked(id, e);  // a failed load is retried by the next request
  }
  for (;;) {
    if (e.state == ModelState::kReady) {
      e.last_used = Clock::now();
      return e.model;
    }
    if (e.state == ModelState::kFailed) {  // the load this call started or waited for
      // Keep the cause's code: an unknown repo stays NOT_FOUND, a missing token PERMISSION_DENIED.
      // Anything else (a bad bundle, a failed export) is the server's state, not the request's
      // fault.
      const absl::StatusCode code = e.error_code == absl::StatusCode::kNotFound ||
                                            e.error_code == absl::StatusCode::kPermissionDenied ||
                                            e.error_code == absl::StatusCode::kUnavailable
                                        ? e.error_code
                                        : absl::StatusCode::kFailedPrecondition;
      return absl::Status(code, absl::StrCat("model ", id, " failed to load: ", e.error));
    }
    if (e.state == ModelState::kAvailable) {  // unloaded while we waited: load it again
      StartLoadLocked(id, e);
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
  return InfoLocked(id, entries_[id]);
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
    if (it->second.state == ModelState::kLoading) {
      return absl::FailedPreconditionError(
          absl::StrCat("model ", id, " is loading; unload it once it is ready"));
    }
    it->second.model.reset();  // in-flight requests hold their own reference
    it->second.state = ModelState::kAvailable;
    info = InfoLocked(id, it->second);
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
  return DownloadFile(options_.hub, options_.vae_url, dir_.VaePath());
}

absl::StatusOr<std::string> ModelRegistry::Materialize(const std::string& id, std::string* source) {
  Resolution r = Resolve(dir_, id);
  *source = DescribeSource(r, options_.hub.endpoint, id);
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

void ModelRegistry::LoadThread(std::string id, uint64_t serial) {
  const auto t0 = Clock::now();
  log::Info("loading model", {{"model", id}});
  auto progress = std::make_shared<LoadProgress>();
  progress->SetPhase("resolve");
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries_[id].progress = progress;
  }
  ScopedLoadProgress scoped_progress(progress.get());
  Notify({{id, ModelState::kLoading}});
  std::string source;
  absl::StatusOr<std::unique_ptr<engine::Segmenter>> model =
      [&]() -> absl::StatusOr<std::unique_ptr<engine::Segmenter>> {
    ASSIGN_OR_RETURN(const std::string bundle, Materialize(id, &source));
    progress->SetPhase("load");
    return engine::Segmenter::Create(bundle, options_.engine);
  }();
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::vector<std::pair<std::string, ModelState>> events;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[id];
    e.source = source;
    e.progress.reset();
    if (model.ok()) {
      e.model = std::move(*model);
      e.state = ModelState::kReady;
      e.load_ms = ms;
      e.last_used = Clock::now();
      e.bytes = FolderBytes(dir_.BundleDir(id));
      log::Info("model ready", {{"model", id}, {"load_ms", ms}, {"bytes", e.bytes}});
      EvictLocked(id, &events);
    } else {
      e.state = ModelState::kFailed;
      e.error = std::string(model.status().message());
      e.error_code = model.status().code();
      log::Error("model load failed", {{"model", id}, {"error", e.error}});
    }
    events.insert(events.begin(), {id, e.state});
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
    ModelInfo info;
    info.id = id;
    info.source = DescribeSource(r, options_.hub.endpoint, id);
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
