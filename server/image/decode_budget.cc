#include "server/image/decode_budget.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pg::image {
namespace {

int64_t Mb(int64_t bytes) { return (bytes + (1 << 20) - 1) >> 20; }

}  // namespace

DecodeBudget::Reservation& DecodeBudget::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = other.owner_;
    bytes_ = other.bytes_;
    other.owner_ = nullptr;
  }
  return *this;
}

void DecodeBudget::Reservation::Release() {
  if (owner_ != nullptr) owner_->Give(bytes_);
  owner_ = nullptr;
}

DecodeBudget::DecodeBudget(int64_t capacity_bytes, std::chrono::milliseconds max_wait)
    : capacity_(std::max<int64_t>(1, capacity_bytes)), max_wait_(max_wait) {}

absl::StatusOr<DecodeBudget::Reservation> DecodeBudget::Reserve(
    int64_t bytes, Clock::time_point deadline, const std::function<bool()>& cancelled) {
  bytes = std::max<int64_t>(0, bytes);
  if (bytes > capacity_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the image needs ", Mb(bytes), " MB to decode, more than the server's ",
        "whole decode budget (--decode_budget_mb ", Mb(capacity_), "); send a smaller image"));
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (queue_.empty() && in_use_ + bytes <= capacity_) {
    in_use_ += bytes;
    return Reservation(this, bytes);
  }
  const auto give_up = std::min(deadline, Clock::now() + max_wait_);
  const auto me = queue_.insert(queue_.end(), next_id_++);
  for (;;) {
    if (queue_.begin() == me && in_use_ + bytes <= capacity_) {
      queue_.erase(me);
      in_use_ += bytes;
      returned_.notify_all();  // the next waiter may fit too
      return Reservation(this, bytes);
    }
    const auto now = Clock::now();
    const bool stop = cancelled && cancelled();
    if (now >= give_up || stop) {
      queue_.erase(me);
      returned_.notify_all();
      if (now >= deadline)
        return absl::DeadlineExceededError("deadline exceeded waiting for decode memory");
      if (stop) return absl::CancelledError("request cancelled while waiting for decode memory");
      return absl::ResourceExhaustedError(absl::StrCat(
          "the server is busy decoding other images: this one needs ", Mb(bytes), " MB and ",
          Mb(capacity_ - in_use_), " MB of the decode budget are free; retry later"));
    }
    returned_.wait_until(lock, std::min(give_up, now + std::chrono::milliseconds(50)));
  }
}

int64_t DecodeBudget::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

void DecodeBudget::Give(int64_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_use_ -= bytes;
  }
  returned_.notify_all();
}

}  // namespace pg::image
