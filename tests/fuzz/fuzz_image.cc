// libFuzzer target: DecodeImage on arbitrary bytes (magic sniffing, header limits, truncation
// checks, stb_image's JPEG/PNG/BMP/GIF decoders, EXIF orientation), then the rest of the
// preprocessing the server runs on a decoded upload (resize to the model's size, normalise,
// re-encode as PNG). Limits are small so that a fuzzer-made 30000x30000 header is refused quickly,
// as the server's limit refuses decompression bombs; DecodeImage must never crash, only return a
// status.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/image/exif.h"
#include "server/image/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  pg::image::DecodeLimits limits;
  limits.max_pixels = 1 << 16;  // 256x256: keeps each run fast; the check itself is what is fuzzed
  absl::StatusOr<pg::image::Image> image = pg::image::DecodeImage(bytes, limits);
  if (!image.ok()) return 0;
  if (image->width <= 0 || image->height <= 0 || image->channels != 3 ||
      image->pixels.size() != static_cast<size_t>(image->width) * image->height * 3) {
    __builtin_trap();  // a decoded image must be self-consistent
  }
  const pg::image::Image small = pg::image::ResizeBicubic(*image, 16, 16);
  const std::vector<float> chw =
      pg::image::Normalize(small, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});
  const pg::image::Image back =
      pg::image::Denormalize(chw.data(), 16, 16, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});
  if (!pg::image::EncodePng(back).ok()) __builtin_trap();
  return 0;
}
