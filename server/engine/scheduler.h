// Continuous batching for one loaded model. One scheduler thread owns the model's KV cache
// (allocated once: max_batch slots x max_len positions) and loops: admit queued requests into free
// slots (each is prefilled into its slot and yields its first token), then run ONE decode step for
// every active sequence together. A request that arrives while others decode joins at the next
// step; each sequence leaves on its own <eos> / max_new_tokens / should_stop() (deadline,
// cancellation) and frees its slot. Greedy decoding per row is independent of the other rows, so a
// request's tokens are the same as when it runs alone (tests/unit/scheduler_test.cc checks that
// against the goldens).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/model/paligemma.h"

namespace pg::engine {

struct SchedulerOptions {
  int max_batch = 8;    // KV-cache slots = sequences decoded together
  int max_queue = 64;   // requests waiting for a slot; more are refused with ResourceExhausted
  int64_t max_len = 0;  // positions per slot; 0 = the model's maximum
};

struct SchedulerStats {
  uint64_t submitted = 0, completed = 0, rejected = 0, decode_steps = 0, decoded_tokens = 0;
  int max_active_seen = 0;      // the largest decode batch so far
  int queued = 0, running = 0;  // now: waiting for a slot; prefilling or decoding
};

class Scheduler {
 public:
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const model::PaliGemma* model,
                                                           const SchedulerOptions& options);
  ~Scheduler();  // fails queued and running requests with Cancelled, joins the loop

  // Blocks until the request finishes. ResourceExhausted when the queue is full; InvalidArgument
  // when the prompt + max_new_tokens does not fit a slot. should_stop() is polled between decode
  // steps (and while queued); when it returns true the result has stopped_early set.
  absl::StatusOr<model::Generation> Generate(const model::PromptInput& prompt,
                                             const model::GenerateOptions& options);

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }
  int64_t cache_bytes() const;

 private:
  struct Job {
    model::PromptInput prompt;
    model::GenerateOptions options;
    model::Generation result;
    std::promise<absl::StatusOr<model::Generation>> done;
    int64_t slot = -1;
    int64_t next_position = 0;  // where the last generated token is fed
    std::chrono::steady_clock::time_point enqueued, prefilled;
  };

  Scheduler(const model::PaliGemma* model, const SchedulerOptions& options)
      : model_(model), options_(options) {}
  void Loop();
  void Finish(std::unique_ptr<Job> job, absl::Status status);
  // After a token was appended: whether the sequence is complete (eos / length).
  bool Complete(const Job& job) const;

  const model::PaliGemma* model_;
  SchedulerOptions options_;
  model::KvCache cache_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stopping_ = false;
  int in_flight_ = 0;  // queued + decoding
  SchedulerStats stats_;
  std::thread thread_;
};

}  // namespace pg::engine
