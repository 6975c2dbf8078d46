// Bounds how many segmentations run at once and how many may wait for a turn. LibTorch already
// spreads one request over every core, so running more at once mostly adds memory; a full queue is
// answered at once with RESOURCE_EXHAUSTED instead of growing latency without bound.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

#include "absl/status/statusor.h"

namespace pg::service {

class Admission {
 public:
  using Clock = std::chrono::steady_clock;

  // Releases its slot when destroyed.
  class Ticket {
   public:
    explicit Ticket(Admission* owner) : owner_(owner) {}
    Ticket(Ticket&& other) noexcept : owner_(other.owner_) { other.owner_ = nullptr; }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    Ticket& operator=(Ticket&&) = delete;
    ~Ticket();

   private:
    Admission* owner_;
  };

  Admission(int max_running, int max_waiting);

  // A running slot, after waiting in FIFO-ish order; ResourceExhausted when max_waiting requests
  // already wait, DeadlineExceeded at `deadline`, Cancelled when `cancelled()`.
  absl::StatusOr<Ticket> Enter(Clock::time_point deadline, const std::function<bool()>& cancelled);

  int running() const;
  int waiting() const;

 private:
  void Leave();

  const int max_running_, max_waiting_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  int running_ = 0, waiting_ = 0;
};

}  // namespace pg::service
