// The segmentation pipeline over one loaded bundle: image -> prompt tokens -> greedy answer ->
// boxes and masks. The CLI, the gRPC service and the benchmark all call this, so the logic exists
// once.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/engine/lru_cache.h"
#include "server/engine/scheduler.h"
#include "server/engine/types.h"
#include "server/image/decode_budget.h"
#include "server/image/image.h"
#include "server/model/paligemma.h"
#include "server/text/tokenizer.h"

namespace pg::engine {

struct EngineOptions {
  model::LoadOptions load;
  int threads = 0;  // LibTorch intra-op threads; 0 = the machine's cores
  image::DecodeLimits image_limits;
  size_t max_prompt_bytes = 2048;
  int max_new_tokens_limit = 1024;
  // Continuous batching (server/engine/scheduler.h): sequences decoded together, requests waiting
  // for a slot, and positions per KV-cache slot (0 = image tokens + 512 + max_new_tokens_limit).
  int max_batch = 8;
  int max_queue = 64;
  int64_t max_context = 0;
  // Vision-tower outputs kept by preprocessed-image hash ("same image, several prompts").
  int64_t vision_cache_bytes = 256ll << 20;
  // Whole results kept by (image bytes hash, prompt, options); 0 = off.
  int64_t response_cache_bytes = 0;
  // Decoded-image bytes shared by every model of the process (--decode_budget_mb); null = none.
  std::shared_ptr<image::DecodeBudget> decode_budget;
  // Pixels of full-size masks one response may carry (--max_full_mask_pixels); < 0 = no limit.
  int64_t max_full_mask_pixels = -1;
};

class Segmenter {
 public:
  static absl::StatusOr<std::unique_ptr<Segmenter>> Create(const std::string& bundle_dir,
                                                           const EngineOptions& options = {});

  absl::StatusOr<SegmentResult> Segment(const SegmentRequest& request) const;

  // Boxes and masks for a decoded answer about an image of width x height (original pixels).
  absl::StatusOr<std::vector<ObjectMask>> MasksFromAnswer(std::string_view answer, int width,
                                                          int height, bool full_masks) const;

  const model::PaliGemma& model() const { return *model_; }
  const text::Tokenizer& tokenizer() const { return *tokenizer_; }
  const EngineOptions& options() const { return options_; }
  Scheduler& scheduler() const { return *scheduler_; }
  CacheStats vision_cache_stats() const { return vision_cache_->stats(); }
  CacheStats response_cache_stats() const { return response_cache_->stats(); }

 private:
  Segmenter() = default;
  absl::Status Validate(const SegmentRequest& request) const;
  // Decodes under the decode budget and resizes to the model input; fills the original size.
  absl::StatusOr<image::Image> DecodeToModelInput(const SegmentRequest& request,
                                                  SegmentResult* result) const;

  EngineOptions options_;
  std::unique_ptr<model::PaliGemma> model_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<Scheduler> scheduler_;
  // Caches are internally synchronised; Segment() is const and called from many threads.
  std::unique_ptr<LruCache<torch::Tensor>> vision_cache_;
  std::unique_ptr<LruCache<SegmentResult>> response_cache_;
};

// Sets LibTorch's intra-op thread count (0 = hardware cores). LibTorch otherwise uses one thread
// here.
void ConfigureThreads(int threads);

// Call first thing in main(): if OMP_WAIT_POLICY is unset, sets it to PASSIVE and re-executes the
// program. libgomp reads it only at start-up; its default busy-waiting threads compete with
// OpenBLAS's own pthreads (and anything else on the machine), which made a 257k-element tanh take
// 12-47 ms instead of 1.5 ms on the 2-core development machine.
void EnsurePassiveOpenMp(char** argv);

}  // namespace pg::engine
