// Defensive EXIF reading: every offset comes from untrusted bytes, so every read is bounds-checked
// and anything unexpected means "no orientation" rather than an error.
#include "server/image/exif.h"

#include <cstdint>
#include <cstring>

namespace pg::image {
namespace {

uint16_t Be16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Be32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

int FromJpeg(std::string_view b) {
  const unsigned char* d = U(b);
  size_t pos = 2;  // after SOI
  while (pos + 4 <= b.size()) {
    if (d[pos] != 0xFF) return 1;  // lost sync: give up (the decoder reports real damage)
    const unsigned char marker = d[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9)
      return 1;  // start of scan / end of image: no more headers
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // markers without a length
      pos += 2;
      continue;
    }
    const size_t length = Be16(d + pos + 2);  // includes its own two bytes
    if (length < 2 || pos + 2 + length > b.size()) return 1;
    // PIL keeps the first APP1 that starts with "Exif\0" and reads the TIFF structure 6 bytes in.
    if (marker == 0xE1 && length - 2 >= 6 && std::memcmp(d + pos + 4, "Exif\0", 5) == 0) {
      return OrientationFromTiff(b.substr(pos + 4 + 6, length - 2 - 6));
    }
    pos += 2 + length;
  }
  return 1;
}

int FromPng(std::string_view b) {
  const unsigned char* d = U(b);
  size_t pos = 8;  // after the signature
  while (pos + 12 <= b.size()) {
    const size_t length = Be32(d + pos);
    if (length > b.size() - pos - 12) return 1;
    std::string_view type = b.substr(pos + 4, 4);
    if (type == "eXIf") {
      std::string_view data = b.substr(pos + 8, length);
      // Some writers keep the JPEG-style prefix inside eXIf; PIL tolerates it, so do we.
      if (data.size() >= 6 && data.substr(0, 6) == std::string_view("Exif\0\0", 6))
        data.remove_prefix(6);
      return OrientationFromTiff(data);
    }
    if (type == "IEND") return 1;
    pos += 12 + length;
  }
  return 1;
}

}  // namespace

int OrientationFromTiff(std::string_view tiff) {
  const unsigned char* d = U(tiff);
  if (tiff.size() < 8) return 1;
  bool big_endian;
  if (d[0] == 'I' && d[1] == 'I') {
    big_endian = false;
  } else if (d[0] == 'M' && d[1] == 'M') {
    big_endian = true;
  } else {
    return 1;
  }
  auto u16 = [&](size_t at) -> uint32_t {
    return big_endian ? Be16(d + at) : static_cast<uint32_t>(d[at] | d[at + 1] << 8);
  };
  auto u32 = [&](size_t at) -> uint32_t {
    return big_endian ? Be32(d + at)
                      : static_cast<uint32_t>(d[at]) | static_cast<uint32_t>(d[at + 1]) << 8 |
                            static_cast<uint32_t>(d[at + 2]) << 16 |
                            static_cast<uint32_t>(d[at + 3]) << 24;
  };
  if (u16(2) != 42) return 1;
  const uint64_t ifd = u32(4);
  if (ifd + 2 > tiff.size()) return 1;
  const uint64_t count = u16(ifd);
  if (ifd + 2 + 12 * count > tiff.size())
    return 1;  // truncated directory: treat the EXIF as absent
  for (uint64_t i = 0; i < count; ++i) {
    const size_t entry = ifd + 2 + 12 * i;
    if (u16(entry) != 0x0112) continue;
    const uint32_t type = u16(entry + 2);
    const uint32_t n = u32(entry + 4);
    if (n < 1) return 1;
    uint32_t value;
    if (type == 3) {  // SHORT, the type the standard prescribes; the value sits in the entry
      value = u16(entry + 8);
    } else if (type == 4) {  // LONG: PIL accepts it too
      value = u32(entry + 8);
    } else {
      return 1;
    }
    return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
  }
  return 1;
}

int ReadExifOrientation(std::string_view b) {
  if (b.size() >= 3 && U(b)[0] == 0xFF && U(b)[1] == 0xD8) return FromJpeg(b);
  if (b.size() >= 8 && b.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8))
    return FromPng(b);
  return 1;
}

Image ApplyOrientation(const Image& src, int orientation) {
  if (orientation < 2 || orientation > 8) return src;
  const int w = src.width, h = src.height, c = src.channels;
  const bool swap = orientation >= 5;  // 5..8 exchange width and height
  Image out;
  out.channels = c;
  out.width = swap ? h : w;
  out.height = swap ? w : h;
  out.pixels.resize(src.pixels.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx, sy;  // the source pixel that lands on (x, y)
      switch (orientation) {
        case 2:
          sx = w - 1 - x;
          sy = y;
          break;  // FLIP_LEFT_RIGHT
        case 3:
          sx = w - 1 - x;
          sy = h - 1 - y;
          break;  // ROTATE_180
        case 4:
          sx = x;
          sy = h - 1 - y;
          break;  // FLIP_TOP_BOTTOM
        case 5:
          sx = y;
          sy = x;
          break;  // TRANSPOSE
        case 6:
          sx = y;
          sy = h - 1 - x;
          break;  // ROTATE_270 (90 clockwise)
        case 7:
          sx = w - 1 - y;
          sy = h - 1 - x;
          break;  // TRANSVERSE
        default:
          sx = w - 1 - y;
          sy = x;
          break;  // 8: ROTATE_90 (counter-clockwise)
      }
      const uint8_t* s = &src.pixels[(static_cast<size_t>(sy) * w + sx) * c];
      uint8_t* o = &out.pixels[(static_cast<size_t>(y) * out.width + x) * c];
      for (int k = 0; k < c; ++k) o[k] = s[k];
    }
  }
  return out;
}

}  // namespace pg::image
