#include "server/engine/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/common/clock.h"
#include "server/common/status.h"

namespace pg::engine {

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const model::PaliGemma* model,
                                                             const SchedulerOptions& options) {
  std::unique_ptr<Scheduler> s(new Scheduler(model, options));
  s->options_.max_batch = std::max(1, options.max_batch);
  s->options_.max_queue = std::max(0, options.max_queue);
  const int64_t model_max = model->manifest().max_position_embeddings;
  s->options_.max_len = options.max_len > 0 ? std::min(options.max_len, model_max) : model_max;
  ASSIGN_OR_RETURN(s->cache_, model->AllocateCache(s->options_.max_batch, s->options_.max_len));
  s->thread_ = std::thread(&Scheduler::Loop, s.get());
  return s;
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t Scheduler::cache_bytes() const { return 2 * cache_.k.numel() * cache_.k.element_size(); }

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SchedulerStats s = stats_;
  s.queued = static_cast<int>(queue_.size());
  s.running = in_flight_ - s.queued;
  return s;
}

absl::StatusOr<model::Generation> Scheduler::Generate(const model::PromptInput& prompt,
                                                      const model::GenerateOptions& options) {
  if (options.max_new_tokens < 1) return absl::InvalidArgumentError("max_new_tokens must be >= 1");
  if (prompt.prefix_ids.empty()) return absl::InvalidArgumentError("empty prompt prefix");
  const int64_t needed = model_->PositionsNeeded(static_cast<int64_t>(prompt.prefix_ids.size()),
                                                 options.max_new_tokens);
  if (needed > options_.max_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt + max_new_tokens needs ", needed, " positions, a KV-cache slot holds ",
                     options_.max_len, " (server flag --max_context)"));
  }
  auto job = std::make_unique<Job>();
  job->prompt = prompt;
  job->options = options;
  job->enqueued = Clock::now();
  auto future = job->done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::CancelledError("the model is being unloaded");
    // max_batch requests decode, max_queue more wait for a slot.
    if (in_flight_ >= options_.max_queue + options_.max_batch) {
      ++stats_.rejected;
      return absl::ResourceExhaustedError(absl::StrCat(
          "the model is busy: ", in_flight_, " requests running or queued (--max_batch ",
          options_.max_batch, ", --max_queue ", options_.max_queue, "); retry later"));
    }
    ++stats_.submitted;
    ++in_flight_;
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
  return future.get();
}

bool Scheduler::Complete(const Job& job) const {
  const auto& tokens = job.result.tokens;
  if (!job.options.suppress_eos && tokens.back() == model_->manifest().eos_id) return true;
  return static_cast<int>(tokens.size()) >= job.options.max_new_tokens;
}

void Scheduler::Finish(std::unique_ptr<Job> job, absl::Status status) {
  const auto now = Clock::now();
  if (job->prefilled != Clock::time_point()) job->result.decode_ms = Ms(job->prefilled, now);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.completed;
    --in_flight_;
  }
  if (status.ok()) {
    job->done.set_value(std::move(job->result));
  } else {
    job->done.set_value(status);
  }
}

void Scheduler::Loop() {
  std::vector<std::unique_ptr<Job>> active;
  std::vector<int64_t> free_slots;
  for (int64_t s = options_.max_batch - 1; s >= 0; --s) free_slots.push_back(s);
  auto stopped = [](const Job& job) {
    return job.options.should_stop && job.options.should_stop();
  };
  for (;;) {
    std::vector<std::unique_ptr<Job>> admitted;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Queued requests are polled for cancellation every 50 ms while nothing runs.
      wake_.wait_for(lock, std::chrono::milliseconds(50),
                     [&] { return stopping_ || !queue_.empty() || !active.empty(); });
      if (stopping_) {
        std::deque<std::unique_ptr<Job>> queued;
        queued.swap(queue_);
        lock.unlock();
        for (auto& j : queued) Finish(std::move(j), absl::CancelledError("the model was unloaded"));
        for (auto& j : active) Finish(std::move(j), absl::CancelledError("the model was unloaded"));
        return;
      }
      // Waiting requests whose client gave up leave the queue without costing compute.
      for (auto it = queue_.begin(); it != queue_.end();) {
        if (stopped(**it)) {
          (*it)->result.stopped_early = true;
          admitted.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      size_t take = std::min(free_slots.size(), queue_.size());
      for (size_t i = 0; i < take; ++i) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // Prefill the newcomers, one per call (a prefill is compute-bound already), into free slots.
    for (auto& job : admitted) {
      if (job->result.stopped_early) {
        Finish(std::move(job), absl::OkStatus());
        continue;
      }
      const int64_t slot = free_slots.back();
      free_slots.pop_back();
      const auto t0 = Clock::now();
      auto first = model_->PrefillSlot(job->prompt, slot, cache_, job->options.suppress_eos);
      job->prefilled = Clock::now();
      job->result.prefill_ms = Ms(t0, job->prefilled);
      job->prompt.image_features = torch::Tensor();  // not needed any more
      if (!first.ok()) {
        free_slots.push_back(slot);
        Finish(std::move(job), first.status());
        continue;
      }
      job->slot = slot;
      job->next_position =
          model_->manifest().num_image_tokens + static_cast<int64_t>(job->prompt.prefix_ids.size());
      job->result.tokens.push_back(*first);
      if (Complete(*job)) {
        free_slots.push_back(slot);
        Finish(std::move(job), absl::OkStatus());
      } else {
        active.push_back(std::move(job));
      }
    }
    if (active.empty()) continue;
    // Between steps: sequences whose deadline passed or whose client cancelled stop here.
    for (auto& job : active) {
      if (stopped(*job)) {
        job->result.stopped_early = true;
        free_slots.push_back(job->slot);
        Finish(std::move(job), absl::OkStatus());
      }
    }
    active.erase(std::remove(active.begin(), active.end(), nullptr), active.end());
    if (active.empty()) continue;

    std::vector<int64_t> ids, positions, slots;
    std::vector<bool> suppress;
    for (const auto& job : active) {
      ids.push_back(job->result.tokens.back());
      positions.push_back(job->next_position);
      slots.push_back(job->slot);
      suppress.push_back(job->options.suppress_eos);
    }
    auto next = model_->DecodeStep(ids, positions, slots, suppress, cache_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.decode_steps;
      stats_.decoded_tokens += active.size();
      stats_.max_active_seen = std::max<int>(stats_.max_active_seen, active.size());
    }
    if (!next.ok()) {
      for (auto& job : active) {
        free_slots.push_back(job->slot);
        Finish(std::move(job), next.status());
      }
      active.clear();
      continue;
    }
    for (size_t r = 0; r < active.size(); ++r) {
      auto& job = active[r];
      job->result.tokens.push_back((*next)[r]);
      ++job->next_position;
      if (Complete(*job)) {
        free_slots.push_back(job->slot);
        Finish(std::move(job), absl::OkStatus());
      }
    }
    active.erase(std::remove(active.begin(), active.end(), nullptr), active.end());
  }
}

}  // namespace pg::engine
