// Turning parsed boxes and VAE outputs into the reference app's fields (and our full-size extras).
#pragma once

#include <array>
#include <string>

#include "absl/status/statusor.h"
#include "server/image/image.h"

namespace pg::engine {

// The reference app's 64x64 grey mask: uint8(clip(m * 0.5 + 0.5, 0, 1) * 255), truncating like
// numpy.
image::Image MaskImage64(const std::array<float, 64 * 64>& logits);

// [x_min, y_min, x_max, y_max] as int(v / 1024 * size), the reference app's "coordinates".
std::array<int, 4> LocToCoordinates(const std::array<int, 4>& loc_yxyx, int width, int height);

// [x_min, y_min, x_max, y_max] rounded into the original image (big_vision's extract_objs
// rounding).
std::array<int, 4> LocToBox(const std::array<int, 4>& loc_yxyx, int width, int height);

// The 64x64 mask resized (PIL bicubic, as big_vision) into box_xyxy and pasted onto a width x
// height canvas, thresholded at the decoder's 0 (grey > 127) into a 0/255 single-channel image.
image::Image FullMask(const image::Image& mask64, const std::array<int, 4>& box_xyxy, int width,
                      int height);

// EncodePng(FullMask(...)) without ever holding the full-size image: the box's rows are resized
// and thresholded one at a time into image::EncodeGreyPngRows. The same pixels, in a tenth of the
// time. A null mask64 gives the all-zero mask (a box without segmentation tokens).
absl::StatusOr<std::string> FullMaskPng(const image::Image* mask64,
                                        const std::array<int, 4>& box_xyxy, int width, int height);

}  // namespace pg::engine
