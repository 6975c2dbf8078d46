// Pixel buffers and the operations the model's preprocessing needs, kept free of LibTorch so they
// can be tested (and fuzzed) on their own.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
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

// What an encoded image's header says, read and checked (format, limits, completeness) without
// decoding any pixel: DecodeImage's checks, run first so that a caller can reserve the memory the
// decode will take.
struct ImageHeader {
  int width = 0;
  int height = 0;
  int channels = 0;          // in the file (before convert("RGB"))
  bool progressive = false;  // progressive JPEG: stb keeps every DCT coefficient until the end
  // The most bytes DecodeImage and a resize to the model input hold at once for this file (stb's
  // own buffers, measured per format in image_test.cc, plus the RGB copy it returns).
  int64_t decode_peak_bytes = 0;
};
absl::StatusOr<ImageHeader> ReadImageHeader(std::string_view bytes,
                                            const DecodeLimits& limits = {});

// Decodes JPEG/PNG/BMP/GIF (first frame) from memory into RGB the way transformers' load_image
// does: EXIF orientation applied (JPEG), then PIL's convert("RGB") (grey replicated, palette
// expanded, alpha dropped). Undecodable, empty, zero-sized or over-limit input is InvalidArgument.
absl::StatusOr<Image> DecodeImage(std::string_view bytes, const DecodeLimits& limits = {});

// PIL's Image.resize(size, Image.BICUBIC) for 1 or 3 channels: separable bicubic (a = -0.5) with
// the filter widened when shrinking (antialias), rounding and clamping as PIL's 8-bit path does.
// Same size returns a copy.
Image ResizeBicubic(const Image& src, int width, int height);

// ResizeBicubic's output one row at a time, for outputs too large to hold (a 7000x7000 full-size
// mask): the horizontal pass is done once up front (it covers the source's rows only), each
// output row's vertical pass on request. Row(y) equals row y of ResizeBicubic(src, width, height).
class RowResizer {
 public:
  RowResizer(const Image& src, int width, int height);
  // width * channels bytes of output row y (0 <= y < height).
  void Row(int y, uint8_t* out) const;

 private:
  struct State;
  std::shared_ptr<const State> state_;
};

// (pixel * rescale - mean) / std per channel, as float32 CHW (3 x height x width).
std::vector<float> Normalize(const Image& rgb, const std::array<float, 3>& mean,
                             const std::array<float, 3>& std, float rescale = 1.0f / 255.0f);

// Inverse of Normalize back to 8-bit RGB (rounded, clamped) — the reference app's "image" field.
Image Denormalize(const float* chw, int width, int height, const std::array<float, 3>& mean,
                  const std::array<float, 3>& std, float rescale = 1.0f / 255.0f);

// PNG bytes of a 1- or 3-channel image.
absl::StatusOr<std::string> EncodePng(const Image& image);

// An 8-bit greyscale PNG of width x height whose rows outside [row_first, row_end) are zero and
// whose row y inside is written by fill_row(y, row) (width bytes, zeroed before the call). Rows are
// streamed into zlib (fast level, run-length strategy, no PNG filter) and never held as a whole
// image; the zero rows outside are spliced from deflate blocks made once, at no cost per row: the
// full-size masks cost a fraction of EncodePng's time and memory. Decodes to the same pixels as
// EncodePng of the same image.
absl::StatusOr<std::string> EncodeGreyPngRows(
    int width, int height, int row_first, int row_end,
    const std::function<void(int y, uint8_t* row)>& fill_row);

}  // namespace pg::image
