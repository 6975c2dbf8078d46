// Native request/result types of the segmentation pipeline. The gRPC service and the CLI translate
// to and from these at their edges; nothing below them sees proto or JSON.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pg::engine {

struct SegmentOptions {
  int max_new_tokens = 256;   // the reference app's 100 cuts answers off after about four objects
  bool include_image = true;  // the reference app always returns the model-input image
  bool include_full_masks = true;
  bool suppress_eos = false;          // parity tests only
  std::function<bool()> should_stop;  // deadline / cancellation, polled between decode steps
  // The client's deadline: bounds waits for the decode budget.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct SegmentRequest {
  std::string image_bytes;  // encoded JPEG/PNG/BMP/GIF
  std::string prompt;
  SegmentOptions options;
};

struct ObjectMask {
  std::string mask_png;  // reference app: 64x64 grey PNG, clip(m*0.5+0.5)*255
  std::array<int, 4>
      coordinates{};  // reference app: [x_min, y_min, x_max, y_max] in model-input px
  std::string label;
  std::array<int, 4> box{};   // [x_min, y_min, x_max, y_max] in original-image px
  bool has_mask = false;      // false when the answer gave a box without seg tokens
  std::string full_mask_png;  // binary 0/255 PNG, original image size (empty if not asked)
};

struct Timings {
  double preprocess_ms = 0, vision_ms = 0, prefill_ms = 0, decode_ms = 0, masks_ms = 0,
         total_ms = 0;
};

struct SegmentResult {
  std::string image_png;  // the model-input image, de-normalised (empty if not asked)
  std::vector<ObjectMask> masks;
  std::string text;  // decoded answer, special tokens skipped
  int original_width = 0, original_height = 0;
  std::vector<int32_t> prompt_token_ids;  // after the image tokens, starting with <bos>
  std::vector<int32_t> generated_token_ids;
  bool stopped_early = false;
  bool vision_cache_hit = false;    // the vision tower was skipped (same image seen before)
  bool response_cache_hit = false;  // the whole result came from the response cache
  Timings timings;
};

}  // namespace pg::engine
