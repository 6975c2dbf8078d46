// What a model load is doing right now (phase, file, bytes), for GetStats while a model is
// LOADING, and whether it must stop (UnloadModel cancelled it, or it ran past --load_timeout_s).
// The registry's load thread installs one for its duration (ScopedLoadProgress); the downloader
// and the exporter runner, which run on that thread, report bytes and poll StopStatus() through
// CurrentLoadProgress() without knowing the registry.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/status.h"

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

  void Cancel() { cancelled_ = true; }
  void SetTimeout(std::chrono::steady_clock::duration timeout) {
    std::lock_guard<std::mutex> lock(mu_);
    deadline_ = std::chrono::steady_clock::now() + timeout;
  }
  // OK while the load may go on; Aborted once cancelled, DeadlineExceeded past the time limit.
  absl::Status StopStatus() const {
    if (cancelled_) return absl::AbortedError("the load was cancelled by UnloadModel");
    std::lock_guard<std::mutex> lock(mu_);
    if (std::chrono::steady_clock::now() > deadline_) {
      return absl::DeadlineExceededError("the load ran past its time limit (--load_timeout_s)");
    }
    return absl::OkStatus();
  }

 private:
  mutable std::mutex mu_;
  Snapshot s_;
  std::atomic<bool> cancelled_{false};
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
};

// OK outside a registry load; else the running load's StopStatus().
inline absl::Status LoadStopStatus();

namespace internal {
inline thread_local LoadProgress* current_load_progress = nullptr;
}  // namespace internal

// The progress of the load running on this thread, or null outside a registry load.
inline LoadProgress* CurrentLoadProgress() { return internal::current_load_progress; }

inline absl::Status LoadStopStatus() {
  const LoadProgress* p = CurrentLoadProgress();
  return p ? p->StopStatus() : absl::OkStatus();
}

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
