#include "server/engine/segmenter.h"

#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/common/clock.h"
#include "server/common/status.h"
#include "server/engine/masks.h"
#include "server/text/answer.h"

namespace pg::engine {

void ConfigureThreads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
}

void EnsurePassiveOpenMp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("PG_NO_REEXEC") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  setenv("PG_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: carry on with the default policy
}

std::string ContentHash(const void* data, size_t size) {
  const std::string_view bytes(static_cast<const char*>(data), size);
  const uint64_t h1 = std::hash<std::string_view>{}(bytes);
  // FNV-1a over 8-byte words, a second independent 64 bits.
  uint64_t h2 = 0xcbf29ce484222325ull ^ size;
  const auto* p = static_cast<const unsigned char*>(data);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h2 = (h2 ^ w) * 0x100000001b3ull;
    h2 ^= h2 >> 29;
  }
  for (; i < size; ++i) h2 = (h2 ^ p[i]) * 0x100000001b3ull;
  return absl::StrCat(absl::Hex(h1, absl::kZeroPad16), absl::Hex(h2, absl::kZeroPad16));
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
  SchedulerOptions so;
  so.max_batch = options.max_batch;
  so.max_queue = options.max_queue;
  so.max_len = options.max_context > 0
                   ? options.max_context
                   : m.num_image_tokens + 512 + std::max(1, options.max_new_tokens_limit);
  ASSIGN_OR_RETURN(s->scheduler_, Scheduler::Create(s->model_.get(), so));
  s->vision_cache_ = std::make_unique<LruCache<torch::Tensor>>(options.vision_cache_bytes);
  s->response_cache_ = std::make_unique<LruCache<SegmentResult>>(options.response_cache_bytes);
  return s;
}

absl::Status Segmenter::Validate(const SegmentRequest& request) const {
  if (request.image_bytes.empty()) return absl::InvalidArgumentError("image is empty");
  if (request.prompt.find_first_not_of(" \t\r\n") == std::string::npos) {
    return absl::InvalidArgumentError("prompt is empty");
  }
  if (request.prompt.size() > options_.max_prompt_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt is ", request.prompt.size(), " bytes, the limit is ", options_.max_prompt_bytes));
  }
  const int n = request.options.max_new_tokens;
  if (n < 1 || n > options_.max_new_tokens_limit) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be between 1 and ",
                                                   options_.max_new_tokens_limit, ", got ", n));
  }
  return absl::OkStatus();
}

namespace {

int64_t ResultBytes(const SegmentResult& r) {
  int64_t bytes = sizeof(r) + r.image_png.size() + r.text.size() +
                  4 * (r.prompt_token_ids.size() + r.generated_token_ids.size());
  for (const auto& m : r.masks) {
    bytes += sizeof(m) + m.mask_png.size() + m.full_mask_png.size() + m.label.size();
  }
  return bytes;
}

}  // namespace

absl::StatusOr<image::Image> Segmenter::DecodeToModelInput(const SegmentRequest& request,
                                                           SegmentResult* result) const {
  const auto& m = model_->manifest();
  // The decode's peak bytes are reserved from the process-wide budget before any pixel exists,
  // and given back once the full-size pixels are gone (full masks need only width and height).
  ASSIGN_OR_RETURN(const image::ImageHeader header,
                   image::ReadImageHeader(request.image_bytes, options_.image_limits));
  image::DecodeBudget::Reservation reservation;
  if (options_.decode_budget) {
    const auto& o = request.options;
    ASSIGN_OR_RETURN(reservation, options_.decode_budget->Reserve(header.decode_peak_bytes,
                                                                  o.deadline, o.should_stop));
  }
  ASSIGN_OR_RETURN(image::Image original,
                   image::DecodeImage(request.image_bytes, options_.image_limits));
  result->original_width = original.width;
  result->original_height = original.height;
  // Preprocess exactly as the reference app: PIL bicubic to the model size (then rescale and
  // normalise in the caller).
  image::Image input = image::ResizeBicubic(original, m.image_size, m.image_size);
  original = image::Image{};  // frees the pixels before the reservation is given back
  return input;
}

absl::StatusOr<SegmentResult> Segmenter::Segment(const SegmentRequest& request) const {
  RETURN_IF_ERROR(Validate(request));
  const auto& m = model_->manifest();
  const auto t0 = Clock::now();

  // The response cache (off by default) answers repeated identical requests without any compute.
  std::string response_key;
  if (response_cache_->enabled()) {
    const auto& o = request.options;
    response_key = absl::StrCat(ContentHash(request.image_bytes.data(), request.image_bytes.size()),
                                "|", o.max_new_tokens, "|", o.include_image, o.include_full_masks,
                                o.suppress_eos, "|", request.prompt);
    if (auto hit = response_cache_->Get(response_key)) {
      SegmentResult result = *hit;
      result.response_cache_hit = true;
      result.timings = Timings{};
      result.timings.total_ms = Ms(t0, Clock::now());
      return result;
    }
  }

  SegmentResult result;
  ASSIGN_OR_RETURN(const image::Image input, DecodeToModelInput(request, &result));
  const std::vector<float> chw = image::Normalize(input, m.mean, m.std, m.rescale_factor);
  if (request.options.include_image) {
    ASSIGN_OR_RETURN(result.image_png,
                     image::EncodePng(image::Denormalize(chw.data(), m.image_size, m.image_size,
                                                         m.mean, m.std, m.rescale_factor)));
  }
  result.prompt_token_ids = text::EncodePrompt(*tokenizer_, request.prompt);
  const auto t1 = Clock::now();

  // The vision tower's output depends only on the model input pixels: cache it by their hash.
  torch::Tensor features;
  std::string vision_key;
  if (vision_cache_->enabled()) {
    vision_key = ContentHash(chw.data(), chw.size() * sizeof(float));
    if (auto hit = vision_cache_->Get(vision_key)) {
      features = *hit;
      result.vision_cache_hit = true;
    }
  }
  if (!features.defined()) {
    ASSIGN_OR_RETURN(torch::Tensor encoded, model_->EncodeImage(chw));
    features = encoded[0];
    if (vision_cache_->enabled()) {
      vision_cache_->Put(vision_key, std::make_shared<const torch::Tensor>(features),
                         features.numel() * features.element_size());
    }
  }
  const auto t2 = Clock::now();

  model::GenerateOptions gen;
  gen.max_new_tokens = request.options.max_new_tokens;
  gen.suppress_eos = request.options.suppress_eos;
  gen.should_stop = request.options.should_stop;
  // Decoding joins the model's continuous batch: concurrent requests share each decode step.
  ASSIGN_OR_RETURN(model::Generation g,
                   scheduler_->Generate({features, result.prompt_token_ids}, gen));
  result.generated_token_ids = g.tokens;
  result.stopped_early = g.stopped_early;
  result.text = tokenizer_->Decode(g.tokens, /*skip_special_tokens=*/true);
  const auto t3 = Clock::now();

  ASSIGN_OR_RETURN(result.masks,
                   MasksFromAnswer(result.text, result.original_width, result.original_height,
                                   request.options.include_full_masks));
  const auto t4 = Clock::now();

  result.timings.preprocess_ms = Ms(t0, t1);
  result.timings.vision_ms = Ms(t1, t2);
  result.timings.prefill_ms = g.prefill_ms;
  result.timings.decode_ms = g.decode_ms;
  result.timings.masks_ms = Ms(t3, t4);
  result.timings.total_ms = Ms(t0, t4);
  if (response_cache_->enabled() && !result.stopped_early) {
    response_cache_->Put(response_key, std::make_shared<const SegmentResult>(result),
                         ResultBytes(result));
  }
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
  // Full-size masks stop once the response's pixel budget is spent (--max_full_mask_pixels): the
  // objects past it keep their box and 64x64 mask, with an empty full_mask.
  const int64_t mask_pixels = int64_t{width} * height;
  int64_t full_mask_budget =
      options_.max_full_mask_pixels < 0 ? INT64_MAX : options_.max_full_mask_pixels;
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
    if (full_masks && mask_pixels <= full_mask_budget) {
      full_mask_budget -= mask_pixels;
      ASSIGN_OR_RETURN(out.full_mask_png,
                       FullMaskPng(out.has_mask ? &mask64 : nullptr, out.box, width, height));
    }
    masks.push_back(std::move(out));
  }
  return masks;
}

}  // namespace pg::engine
