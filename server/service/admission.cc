#include "server/service/admission.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pg::service {

Admission::Ticket::~Ticket() {
  if (owner_) owner_->Leave();
}

Admission::Admission(int max_running, int max_waiting)
    : max_running_(std::max(1, max_running)), max_waiting_(std::max(0, max_waiting)) {}

absl::StatusOr<Admission::Ticket> Admission::Enter(Clock::time_point deadline,
                                                   const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  if (running_ < max_running_ && waiting_ == 0) {
    ++running_;
    return Ticket(this);
  }
  if (waiting_ >= max_waiting_) {
    return absl::ResourceExhaustedError(absl::StrCat("the server is busy: ", running_,
                                                     " requests running and ", waiting_,
                                                     " waiting (the queue limit); retry later"));
  }
  ++waiting_;
  for (;;) {
    if (running_ < max_running_) {
      --waiting_;
      ++running_;
      return Ticket(this);
    }
    const auto now = Clock::now();
    if (now >= deadline || (cancelled && cancelled())) {
      --waiting_;
      if (now >= deadline)
        return absl::DeadlineExceededError("deadline exceeded waiting in the queue");
      return absl::CancelledError("request cancelled while queued");
    }
    freed_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(50)));
  }
}

void Admission::Leave() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
  }
  freed_.notify_one();
}

int Admission::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

int Admission::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

}  // namespace pg::service
