// A budget of decoded-image bytes shared by every request of the process (--decode_budget_mb): a
// decode reserves its peak bytes (ImageHeader::decode_peak_bytes) before it allocates any pixel, so
// that concurrent uploads of small files that decode to huge images (a 23 KB GIF of 7000x7000 is
// ~440 MB while it decodes) wait, then are refused as busy, instead of exhausting memory.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>

#include "absl/status/statusor.h"

namespace pg::image {

class DecodeBudget {
 public:
  using Clock = std::chrono::steady_clock;

  // Gives its bytes back when destroyed.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(DecodeBudget* owner, int64_t bytes) : owner_(owner), bytes_(bytes) {}
    Reservation(Reservation&& other) noexcept : owner_(other.owner_), bytes_(other.bytes_) {
      other.owner_ = nullptr;
    }
    Reservation& operator=(Reservation&& other) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { Release(); }
    void Release();

   private:
    DecodeBudget* owner_ = nullptr;
    int64_t bytes_ = 0;
  };

  // `max_wait`: how long a reservation waits for bytes to come back before it is refused.
  DecodeBudget(int64_t capacity_bytes, std::chrono::milliseconds max_wait);

  // `bytes` of the budget, waiting (in arrival order) up to max_wait or `deadline`, whichever comes
  // first. ResourceExhausted when the wait ran out or `bytes` exceeds the whole budget (such an
  // image can never be decoded here: the message names --decode_budget_mb); DeadlineExceeded at
  // `deadline`; Cancelled when `cancelled()`.
  absl::StatusOr<Reservation> Reserve(int64_t bytes, Clock::time_point deadline,
                                      const std::function<bool()>& cancelled = {});

  int64_t capacity() const { return capacity_; }
  int64_t in_use() const;

 private:
  void Give(int64_t bytes);

  const int64_t capacity_;
  const std::chrono::milliseconds max_wait_;
  mutable std::mutex mu_;
  std::condition_variable returned_;
  int64_t in_use_ = 0;
  // Waiters in arrival order; only the first may take bytes, so a big request is not starved by
  // a stream of small ones.
  std::list<uint64_t> queue_;
  uint64_t next_id_ = 0;
};

}  // namespace pg::image
