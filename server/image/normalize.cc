// The model's pixel normalisation and its inverse (the reference app returns the preprocessed
// image).
#include <cmath>

#include "server/image/image.h"

namespace pg::image {

std::vector<float> Normalize(const Image& rgb, const std::array<float, 3>& mean,
                             const std::array<float, 3>& std, float rescale) {
  const size_t plane = static_cast<size_t>(rgb.width) * rgb.height;
  std::vector<float> out(plane * 3);
  for (int c = 0; c < 3; ++c) {
    // A grey image feeds its one channel to all three planes, as convert("RGB") would have.
    const int src_c = rgb.channels == 1 ? 0 : c;
    float* o = &out[plane * c];
    for (size_t i = 0; i < plane; ++i) {
      o[i] = (rgb.pixels[i * rgb.channels + src_c] * rescale - mean[c]) / std[c];
    }
  }
  return out;
}

Image Denormalize(const float* chw, int width, int height, const std::array<float, 3>& mean,
                  const std::array<float, 3>& std, float rescale) {
  const size_t plane = static_cast<size_t>(width) * height;
  Image out{width, height, 3, std::vector<uint8_t>(plane * 3)};
  for (int c = 0; c < 3; ++c) {
    for (size_t i = 0; i < plane; ++i) {
      const float v = std::round((chw[plane * c + i] * std[c] + mean[c]) / rescale);
      // !(v > 0) also sends NaN to 0.
      out.pixels[i * 3 + c] = !(v > 0.0f) ? 0 : v >= 255.0f ? 255 : static_cast<uint8_t>(v);
    }
  }
  return out;
}

}  // namespace pg::image
