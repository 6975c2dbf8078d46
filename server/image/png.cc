// PNG encoding with stb_image_write into memory.
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/image/image.h"

#define STBI_WRITE_NO_STDIO
#include <stb_image_write.h>

namespace pg::image {

absl::StatusOr<std::string> EncodePng(const Image& image) {
  if (image.channels != 1 && image.channels != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodePng: channels must be 1 or 3, got ", image.channels));
  }
  if (image.width <= 0 || image.height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodePng: zero size ", image.width, "x", image.height));
  }
  const size_t expected = static_cast<size_t>(image.width) * image.height * image.channels;
  if (image.pixels.size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodePng: ", image.pixels.size(), " bytes of pixels, expected ", expected));
  }
  std::string out;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  };
  if (!stbi_write_png_to_func(append, &out, image.width, image.height, image.channels,
                              image.pixels.data(), image.width * image.channels)) {
    return absl::InternalError("EncodePng: stb_image_write failed");
  }
  return out;
}

}  // namespace pg::image
