// Pixel buffers and the operations the model's preprocessing needs, kept free of LibTorch so they
// can be tested (and fuzzed) on their own.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pg::image {

// 8-bit interleaved pixels, row-major, no padding. channels is 1 (grey) or 3 (RGB).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;  // width * height * channels
};

struct DecodeLimits {
  int64_t max_bytes = 20 * 1024 * 1024;  // encoded size
  int64_t max_pixels = 50'000'000;       // width * height after decoding (decompression bombs)
};

// Decodes JPEG/PNG/BMP/GIF (first frame) from memory into RGB the way transformers' load_image
// does: EXIF orientation applied (JPEG), then PIL's convert("RGB") (grey replicated, palette
// expanded, alpha dropped). Undecodable, empty, zero-sized or over-limit input is InvalidArgument.
absl::StatusOr<Image> DecodeImage(std::string_view bytes, const DecodeLimits& limits = {});

// PIL's Image.resize(size, Image.BICUBIC) for 1 or 3 channels: separable bicubic (a = -0.5) with
// the filter widened when shrinking (antialias), rounding and clamping as PIL's 8-bit path does.
// Same size returns a copy.
Image ResizeBicubic(const Image& src, int width, int height);

// (pixel * rescale - mean) / std per channel, as float32 CHW (3 x height x width).
std::vector<float> Normalize(const Image& rgb, const std::array<float, 3>& mean,
                             const std::array<float, 3>& std, float rescale = 1.0f / 255.0f);

// Inverse of Normalize back to 8-bit RGB (rounded, clamped) — the reference app's "image" field.
Image Denormalize(const float* chw, int width, int height, const std::array<float, 3>& mean,
                  const std::array<float, 3>& std, float rescale = 1.0f / 255.0f);

// PNG bytes of a 1- or 3-channel image.
absl::StatusOr<std::string> EncodePng(const Image& image);

}  // namespace pg::image
