// What a model load is doing right now (phase, file, bytes), for GetStats while a model is
// LOADING. The registry's load thread installs one for its duration (ScopedLoadProgress); the
// downloader, which runs on that thread, reports bytes through CurrentLoadProgress() without
// knowing the registry.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

namespace pg::registry {

class LoadProgress {
 public:
  struct Snapshot {
    std::string phase, file;
    int64_t bytes_done = 0, bytes_total = 0;  // 0 where not known
  };

  void SetPhase(std::string phase) {
    std::lock_guard<std::mutex> lock(mu_);
    s_ = Snapshot{std::move(phase), "", 0, 0};
  }
  void SetBytes(const std::string& file, int64_t done, int64_t total) {
    std::lock_guard<std::mutex> lock(mu_);
    s_.file = file;
    s_.bytes_done = done;
    s_.bytes_total = total;
  }
  Snapshot Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return s_;
  }

 private:
  mutable std::mutex mu_;
  Snapshot s_;
};

namespace internal {
inline thread_local LoadProgress* current_load_progress = nullptr;
}  // namespace internal

// The progress of the load running on this thread, or null outside a registry load.
inline LoadProgress* CurrentLoadProgress() { return internal::current_load_progress; }

class ScopedLoadProgress {
 public:
  explicit ScopedLoadProgress(LoadProgress* p) : prev_(internal::current_load_progress) {
    internal::current_load_progress = p;
  }
  ~ScopedLoadProgress() { internal::current_load_progress = prev_; }
  ScopedLoadProgress(const ScopedLoadProgress&) = delete;
  ScopedLoadProgress& operator=(const ScopedLoadProgress&) = delete;

 private:
  LoadProgress* prev_;
};

}  // namespace pg::registry
