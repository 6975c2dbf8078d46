#include "server/engine/masks.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace pg::engine {

image::Image MaskImage64(const std::array<float, 64 * 64>& logits) {
  image::Image out{64, 64, 1, std::vector<uint8_t>(64 * 64)};
  for (size_t i = 0; i < logits.size(); ++i) {
    // float32 arithmetic then truncation, as np.clip(m * 0.5 + 0.5, 0, 1) * 255 then astype(uint8).
    float v = std::clamp(logits[i] * 0.5f + 0.5f, 0.0f, 1.0f) * 255.0f;
    out.pixels[i] = static_cast<uint8_t>(v);
  }
  return out;
}

std::array<int, 4> LocToCoordinates(const std::array<int, 4>& loc, int width, int height) {
  auto scale = [](int v, int size) { return static_cast<int>(v / 1024.0 * size); };
  return {scale(loc[1], width), scale(loc[0], height), scale(loc[3], width), scale(loc[2], height)};
}

std::array<int, 4> LocToBox(const std::array<int, 4>& loc, int width, int height) {
  // Python's round() is round-half-to-even; std::nearbyint in the default rounding mode matches it.
  auto scale = [](int v, int size) { return static_cast<int>(std::nearbyint(v / 1024.0 * size)); };
  return {scale(loc[1], width), scale(loc[0], height), scale(loc[3], width), scale(loc[2], height)};
}

image::Image FullMask(const image::Image& mask64, const std::array<int, 4>& box, int width,
                      int height) {
  image::Image canvas{width, height, 1, std::vector<uint8_t>(static_cast<size_t>(width) * height)};
  const int x1 = std::clamp(box[0], 0, width), y1 = std::clamp(box[1], 0, height);
  const int x2 = std::clamp(box[2], 0, width), y2 = std::clamp(box[3], 0, height);
  if (x2 <= x1 || y2 <= y1) return canvas;
  const image::Image resized = image::ResizeBicubic(mask64, x2 - x1, y2 - y1);
  for (int y = 0; y < resized.height; ++y) {
    for (int x = 0; x < resized.width; ++x) {
      const uint8_t v = resized.pixels[static_cast<size_t>(y) * resized.width + x];
      canvas.pixels[static_cast<size_t>(y1 + y) * width + (x1 + x)] = v > 127 ? 255 : 0;
    }
  }
  return canvas;
}

absl::StatusOr<std::string> FullMaskPng(const image::Image* mask64, const std::array<int, 4>& box,
                                        int width, int height) {
  const int x1 = std::clamp(box[0], 0, width), y1 = std::clamp(box[1], 0, height);
  const int x2 = std::clamp(box[2], 0, width), y2 = std::clamp(box[3], 0, height);
  if (mask64 == nullptr || x2 <= x1 || y2 <= y1) {
    return image::EncodeGreyPngRows(width, height, 0, 0, [](int, uint8_t*) {});
  }
  const image::RowResizer resizer(*mask64, x2 - x1, y2 - y1);
  std::vector<uint8_t> resized(static_cast<size_t>(x2 - x1));
  return image::EncodeGreyPngRows(width, height, y1, y2, [&](int y, uint8_t* row) {
    resizer.Row(y - y1, resized.data());
    for (int x = 0; x < x2 - x1; ++x) row[x1 + x] = resized[x] > 127 ? 255 : 0;
  });
}

}  // namespace pg::engine
