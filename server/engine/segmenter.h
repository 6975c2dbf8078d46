// The segmentation pipeline over one loaded bundle: image -> prompt tokens -> greedy answer -> boxes and
// masks. The CLI, the gRPC service and the benchmark all call this, so the logic exists once.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/engine/types.h"
#include "server/image/image.h"
#include "server/model/paligemma.h"
#include "server/text/tokenizer.h"

namespace pg::engine {

struct EngineOptions {
  model::LoadOptions load;
  int threads = 0;                  // LibTorch intra-op threads; 0 = the machine's cores
  image::DecodeLimits image_limits;
  size_t max_prompt_bytes = 2048;
  int max_new_tokens_limit = 1024;
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

 private:
  Segmenter() = default;
  absl::Status Validate(const SegmentRequest& request) const;

  EngineOptions options_;
  std::unique_ptr<model::PaliGemma> model_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
};

// Sets LibTorch's intra-op thread count (0 = hardware cores). LibTorch otherwise uses one thread here.
void ConfigureThreads(int threads);

}  // namespace pg::engine
