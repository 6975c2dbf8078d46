// libFuzzer target: the EXIF reader on its own, without the decoder in front of it (which refuses
// most inputs before EXIF is read). The first byte picks the container: a bare TIFF structure, or
// the bytes wrapped as a JPEG APP1 "Exif" segment or a PNG eXIf chunk; any orientation found is
// applied to a small image to check ApplyOrientation's index arithmetic.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/image/exif.h"
#include "server/image/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 4;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  int orientation = 1;
  if (mode == 0) {
    orientation = pg::image::OrientationFromTiff(rest);
  } else if (mode == 1) {
    orientation = pg::image::ReadExifOrientation(rest);  // raw: may or may not look like JPEG/PNG
  } else if (mode == 2 && rest.size() <= 0xFFFF - 8) {
    std::string jpeg("\xFF\xD8\xFF\xE1", 4);
    const size_t len = rest.size() + 2 + 6;
    jpeg += static_cast<char>(len >> 8);
    jpeg += static_cast<char>(len & 0xFF);
    jpeg.append("Exif\0\0", 6);
    jpeg.append(rest);
    jpeg.append("\xFF\xD9");
    orientation = pg::image::ReadExifOrientation(jpeg);
  } else if (mode == 3) {
    std::string png("\x89PNG\r\n\x1a\n", 8);
    const uint32_t len = static_cast<uint32_t>(rest.size());
    for (int shift = 24; shift >= 0; shift -= 8) png += static_cast<char>((len >> shift) & 0xFF);
    png += "eXIf";
    png.append(rest);
    png.append(4, '\0');  // CRC (not checked)
    orientation = pg::image::ReadExifOrientation(png);
  }
  if (orientation < 1 || orientation > 8) __builtin_trap();
  pg::image::Image img;
  img.width = 3;
  img.height = 2;
  img.channels = 3;
  img.pixels.resize(3 * 2 * 3, 7);
  const pg::image::Image out = pg::image::ApplyOrientation(img, orientation);
  if (out.pixels.size() != img.pixels.size() || out.width * out.height != 6) __builtin_trap();
  return 0;
}
