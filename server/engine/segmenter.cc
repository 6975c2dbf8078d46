#include "server/engine/segmenter.h"

#include <chrono>
#include <thread>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/engine/masks.h"
#include "server/text/answer.h"

namespace pg::engine {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

void ConfigureThreads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
}

absl::StatusOr<std::unique_ptr<Segmenter>> Segmenter::Create(const std::string& bundle_dir,
                                                             const EngineOptions& options) {
  ConfigureThreads(options.threads);
  std::unique_ptr<Segmenter> s(new Segmenter());
  s->options_ = options;
  ASSIGN_OR_RETURN(s->model_, model::PaliGemma::Load(bundle_dir, options.load));
  ASSIGN_OR_RETURN(text::Tokenizer tokenizer,
                   text::Tokenizer::FromFile(bundle_dir + "/tokenizer.json"));
  s->tokenizer_ = std::make_unique<text::Tokenizer>(std::move(tokenizer));
  const auto& m = s->model_->manifest();
  if (s->tokenizer_->TokenToId("<image>") != m.image_id ||
      s->tokenizer_->TokenToId("<bos>") != m.bos_id) {
    return absl::InvalidArgumentError(
        "bundle's tokenizer.json does not match its manifest's special token ids");
  }
  return s;
}

absl::Status Segmenter::Validate(const SegmentRequest& request) const {
  if (request.image_bytes.empty()) return absl::InvalidArgumentError("image is empty");
  if (request.prompt.find_first_not_of(" \t\r\n") == std::string::npos) {
    return absl::InvalidArgumentError("prompt is empty");
  }
  if (request.prompt.size() > options_.max_prompt_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("prompt is ", request.prompt.size(),
                                                   " bytes, the limit is ",
                                                   options_.max_prompt_bytes));
  }
  const int n = request.options.max_new_tokens;
  if (n < 1 || n > options_.max_new_tokens_limit) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be between 1 and ",
                                                   options_.max_new_tokens_limit, ", got ", n));
  }
  return absl::OkStatus();
}

absl::StatusOr<SegmentResult> Segmenter::Segment(const SegmentRequest& request) const {
  RETURN_IF_ERROR(Validate(request));
  const auto& m = model_->manifest();
  SegmentResult result;
  const auto t0 = Clock::now();

  // Preprocess exactly as the reference app: PIL bicubic to the model size, rescale, normalise.
  ASSIGN_OR_RETURN(image::Image original, image::DecodeImage(request.image_bytes,
                                                             options_.image_limits));
  result.original_width = original.width;
  result.original_height = original.height;
  const image::Image input = image::ResizeBicubic(original, m.image_size, m.image_size);
  const std::vector<float> chw = image::Normalize(input, m.mean, m.std, m.rescale_factor);
  if (request.options.include_image) {
    ASSIGN_OR_RETURN(result.image_png,
                     image::EncodePng(image::Denormalize(chw.data(), m.image_size, m.image_size,
                                                         m.mean, m.std, m.rescale_factor)));
  }
  result.prompt_token_ids = text::EncodePrompt(*tokenizer_, request.prompt);
  const auto t1 = Clock::now();

  ASSIGN_OR_RETURN(torch::Tensor features, model_->EncodeImage(chw));
  const auto t2 = Clock::now();

  model::GenerateOptions gen;
  gen.max_new_tokens = request.options.max_new_tokens;
  gen.suppress_eos = request.options.suppress_eos;
  gen.should_stop = request.options.should_stop;
  ASSIGN_OR_RETURN(auto generations,
                   model_->Generate({{features[0], result.prompt_token_ids}}, gen));
  const model::Generation& g = generations.front();
  result.generated_token_ids = g.tokens;
  result.stopped_early = g.stopped_early;
  result.text = tokenizer_->Decode(g.tokens, /*skip_special_tokens=*/true);
  const auto t3 = Clock::now();

  ASSIGN_OR_RETURN(result.masks, MasksFromAnswer(result.text, original.width, original.height,
                                                  request.options.include_full_masks));
  const auto t4 = Clock::now();

  result.timings.preprocess_ms = Ms(t0, t1);
  result.timings.vision_ms = Ms(t1, t2);
  result.timings.prefill_ms = g.prefill_ms;
  result.timings.decode_ms = g.decode_ms;
  result.timings.masks_ms = Ms(t3, t4);
  result.timings.total_ms = Ms(t0, t4);
  return result;
}

absl::StatusOr<std::vector<ObjectMask>> Segmenter::MasksFromAnswer(std::string_view answer,
                                                                   int width, int height,
                                                                   bool full_masks) const {
  const auto& m = model_->manifest();
  std::vector<ObjectMask> masks;
  const std::vector<text::DetectedObject> objects = text::ParseAnswer(answer);
  std::vector<std::array<int, 16>> codes;
  for (const auto& o : objects) {
    if (o.seg) codes.push_back(*o.seg);
  }
  ASSIGN_OR_RETURN(auto decoded, model_->DecodeMasks(codes));
  size_t next_mask = 0;
  for (const auto& o : objects) {
    ObjectMask out;
    out.label = o.label;
    out.coordinates = LocToCoordinates(o.loc, m.image_size, m.image_size);
    out.box = LocToBox(o.loc, width, height);
    image::Image mask64{64, 64, 1, std::vector<uint8_t>(64 * 64, 0)};
    if (o.seg) {
      mask64 = MaskImage64(decoded[next_mask++]);
      out.has_mask = true;
    }
    ASSIGN_OR_RETURN(out.mask_png, image::EncodePng(mask64));
    if (full_masks) {
      const image::Image full =
          out.has_mask ? FullMask(mask64, out.box, width, height)
                       : image::Image{width, height, 1,
                                      std::vector<uint8_t>(static_cast<size_t>(width) *
                                                           height)};
      ASSIGN_OR_RETURN(out.full_mask_png, image::EncodePng(full));
    }
    masks.push_back(std::move(out));
  }
  return masks;
}

}  // namespace pg::engine
