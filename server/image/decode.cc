// DecodeImage: magic-byte sniffing, limits checked from the header before any pixel buffer exists,
// stb_image decoding, PIL's convert("RGB") semantics and EXIF orientation.
//
// Known differences from PIL (transformers' load_image):
// - JPEG: stb's IDCT/upsampling differ from libjpeg by a few levels (max 2, mean 0.04 on the
// fixtures).
// - GIF: a transparent pixel of the first frame comes out black; PIL gives its palette colour.
// - Truncated GIFs decode as far as the data goes (stb); PIL raises.
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/image/exif.h"
#include "server/image/image.h"

#define STBI_NO_STDIO
#include <stb_image.h>

namespace pg::image {
namespace {

enum class Format { kJpeg, kPng, kBmp, kGif, kUnknown };

bool StartsWith(std::string_view b, std::string_view magic) {
  return b.substr(0, magic.size()) == magic;
}

Format Sniff(std::string_view b) {
  if (StartsWith(b, "\xFF\xD8\xFF")) return Format::kJpeg;
  if (StartsWith(b, std::string_view("\x89PNG\r\n\x1a\n", 8))) return Format::kPng;
  if (StartsWith(b, "GIF87a") || StartsWith(b, "GIF89a")) return Format::kGif;
  if (StartsWith(b, "BM")) return Format::kBmp;
  return Format::kUnknown;
}

// Names formats people commonly upload that we refuse, so the error says what was sent.
const char* KnownUnsupported(std::string_view b) {
  if (StartsWith(b, std::string_view("II*\0", 4)) || StartsWith(b, std::string_view("MM\0*", 4)))
    return "TIFF";
  if (StartsWith(b, "RIFF") && b.size() >= 12 && b.substr(8, 4) == "WEBP") return "WebP";
  if (StartsWith(b, "8BPS")) return "PSD";
  if (b.size() >= 12 && b.substr(4, 4) == "ftyp") return "HEIF/AVIF";
  if (StartsWith(b, std::string_view("\0\0\1\0", 4))) return "ICO";
  return nullptr;
}

struct StbiFree {
  void operator()(void* p) const { stbi_image_free(p); }
};

std::string StbReason() {
  const char* r = stbi_failure_reason();
  return r != nullptr ? r : "unknown error";
}

// A 16-bit greyscale PNG is the one case where PIL's convert("RGB") is not "keep the high byte":
// PIL opens it as mode I and clamps each value to 255. stb reduces every 16-bit PNG with >> 8,
// which is what PIL does for 16-bit RGB, RGBA and grey+alpha, so only this case needs its own path.
bool IsGrey16Png(std::string_view b) {
  // signature (8) + IHDR length (4) + "IHDR" (4) + width (4) + height (4) + bit depth + colour type
  return b.size() >= 26 && b.substr(12, 4) == "IHDR" && static_cast<unsigned char>(b[24]) == 16 &&
         static_cast<unsigned char>(b[25]) == 0;
}

uint32_t Le32(std::string_view b, size_t at) {
  const auto* d = reinterpret_cast<const unsigned char*>(b.data()) + at;
  return static_cast<uint32_t>(d[0]) | static_cast<uint32_t>(d[1]) << 8 |
         static_cast<uint32_t>(d[2]) << 16 | static_cast<uint32_t>(d[3]) << 24;
}

// stb decodes truncated JPEG and BMP data "successfully" (missing bytes read as zeros), where PIL
// raises "image file is truncated". These checks reject such files before decoding. (stb already
// fails on truncated PNGs: it needs IEND and intact zlib data. But it grows its IDAT buffer to the
// length a chunk *claims* before reading it, so a 500-byte upload claiming a 4 GB chunk made it
// allocate 4 GB: every chunk must fit in the bytes we hold.)
absl::Status CheckComplete(Format format, std::string_view b) {
  if (format == Format::kPng) {
    const auto* d = reinterpret_cast<const unsigned char*>(b.data());
    size_t pos = 8;
    while (pos + 12 <= b.size()) {
      const uint64_t length = uint64_t{d[pos]} << 24 | uint64_t{d[pos + 1]} << 16 |
                              uint64_t{d[pos + 2]} << 8 | d[pos + 3];
      if (length > b.size() - pos - 12) break;
      if (b.substr(pos + 4, 4) == "IEND") return absl::OkStatus();
      pos += 12 + length;
    }
    return absl::InvalidArgumentError(
        "could not decode image: truncated PNG (a chunk runs past the end of the data)");
  }
  if (format == Format::kJpeg) {
    // Skip the header segments (an EXIF thumbnail may hold its own FFD9), then the entropy-coded
    // data cannot contain FFD9 (0xFF is stuffed as FF00), so the end-of-image marker must follow.
    const auto* d = reinterpret_cast<const unsigned char*>(b.data());
    size_t pos = 2;
    while (pos + 4 <= b.size() && d[pos] == 0xFF) {
      const unsigned char m = d[pos + 1];
      if (m == 0xFF) {
        ++pos;
        continue;
      }
      if (m == 0xDA) break;
      if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
        pos += 2;
        continue;
      }
      pos += 2 + (static_cast<size_t>(d[pos + 2]) << 8 | d[pos + 3]);
    }
    if (pos >= b.size() || b.find("\xFF\xD9", pos) == std::string_view::npos) {
      return absl::InvalidArgumentError(
          "could not decode image: truncated JPEG (no end-of-image marker)");
    }
  } else if (format == Format::kBmp) {
    if (b.size() < 30) return absl::InvalidArgumentError("could not decode image: truncated BMP");
    const int64_t offset = Le32(b, 10), header = Le32(b, 14);
    int64_t w, h, bpp, compression = 0;
    if (header == 12) {  // OS/2 BITMAPCOREHEADER
      w = static_cast<uint16_t>(Le32(b, 18));
      h = static_cast<uint16_t>(Le32(b, 20));
      bpp = static_cast<uint16_t>(Le32(b, 24));
    } else {
      if (b.size() < 34) return absl::InvalidArgumentError("could not decode image: truncated BMP");
      w = static_cast<int32_t>(Le32(b, 18));
      h = static_cast<int32_t>(Le32(b, 22));
      bpp = static_cast<uint16_t>(Le32(b, 28));
      compression = Le32(b, 30);
    }
    if ((compression == 0 || compression == 3) && w > 0 && bpp > 0 && bpp <= 32) {
      const int64_t row = (bpp * w + 31) / 32 * 4;
      if (static_cast<int64_t>(b.size()) < offset + row * (h < 0 ? -h : h)) {
        return absl::InvalidArgumentError("could not decode image: truncated BMP");
      }
    }
  }
  return absl::OkStatus();
}

// The dimensions the file's header declares, read without stb: stbi_info refuses headers over 2^30
// bytes of pixels with only a generic "unknown image type", and zero sizes with "corrupt", where
// the caller deserves "too large" and "zero size". Returns false when the header is too short to
// say (stb then reports it).
bool HeaderSize(Format format, std::string_view b, int64_t* w, int64_t* h) {
  const auto* d = reinterpret_cast<const unsigned char*>(b.data());
  auto be16 = [&](size_t at) { return int64_t{d[at]} << 8 | d[at + 1]; };
  switch (format) {
    case Format::kPng:
      if (b.size() < 24 || b.substr(12, 4) != "IHDR") return false;
      *w = be16(16) << 16 | be16(18);
      *h = be16(20) << 16 | be16(22);
      return true;
    case Format::kGif:
      if (b.size() < 10) return false;
      *w = d[6] | d[7] << 8;
      *h = d[8] | d[9] << 8;
      return true;
    case Format::kBmp: {
      if (b.size() < 26) return false;
      if (Le32(b, 14) == 12) {
        *w = d[18] | d[19] << 8;
        *h = d[20] | d[21] << 8;
      } else {
        *w = static_cast<int32_t>(Le32(b, 18));
        *h = static_cast<int32_t>(Le32(b, 22));
        if (*h < 0) *h = -*h;  // top-down bitmap
      }
      return true;
    }
    case Format::kJpeg: {
      size_t pos = 2;
      while (pos + 4 <= b.size() && d[pos] == 0xFF) {
        const unsigned char m = d[pos + 1];
        if (m == 0xFF) {
          ++pos;
          continue;
        }
        if (m == 0xDA || m == 0xD9) return false;
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
          pos += 2;
          continue;
        }
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
          if (pos + 9 > b.size()) return false;
          *h = be16(pos + 5);
          *w = be16(pos + 7);
          return true;
        }
        pos += 2 + static_cast<size_t>(be16(pos + 2));
      }
      return false;
    }
    default:
      return false;
  }
}

absl::Status CheckSize(int64_t w, int64_t h, const DecodeLimits& limits) {
  if (w <= 0 || h <= 0)
    return absl::InvalidArgumentError(absl::StrCat("image has zero size: ", w, "x", h));
  if (w > limits.max_pixels || h > limits.max_pixels || w * h > limits.max_pixels) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is too large: ", w, "x", h, " exceeds ", limits.max_pixels, " pixels"));
  }
  return absl::OkStatus();
}

// stb fills whatever a JPEG or GIF lacks with zeros, at the full cost of decoding the size the
// header claims: a 775-byte JPEG claiming 7000x7000 took 5 s and 263 MB. Real files cannot be that
// small: a JPEG spends at least one bit per 8x8 luma block on its DC coefficient (w*h/512 bytes),
// and LZW packs at most ~2,700 pixels into a byte (strings of <= 4096 pixels per 12-bit code). Half
// those bounds leaves room for any legitimate encoder.
absl::Status CheckEnoughData(Format format, size_t size, int64_t w, int64_t h) {
  int64_t need = 0;
  const char* name = "";
  if (format == Format::kJpeg) {
    need = w * h / 1024;
    name = "JPEG";
  } else if (format == Format::kGif) {
    need = w * h / 8192;
    name = "GIF";
  }
  if (static_cast<int64_t>(size) < need) {
    return absl::InvalidArgumentError(absl::StrCat("could not decode image: truncated ", name, " (",
                                                   size, " bytes cannot hold ", w, "x", h,
                                                   " pixels; at least ", need, " expected)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Image> DecodeImage(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.empty()) return absl::InvalidArgumentError("empty image data");
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes ||
      bytes.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat("image data is too large: ", bytes.size(),
                                                   " bytes exceeds ", limits.max_bytes));
  }
  const Format format = Sniff(bytes);
  if (format == Format::kUnknown) {
    if (const char* name = KnownUnsupported(bytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported image format ", name,
                       ": image data is not a supported image (JPEG, PNG, BMP or GIF)"));
    }
    return absl::InvalidArgumentError(
        "image data is not a supported image (JPEG, PNG, BMP or GIF)");
  }

  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  // Limits are checked from the header before stb allocates width * height * 3 bytes: first from
  // our own reading of the header, then from stb's (which also validates the header's structure).
  if (int64_t hw, hh; HeaderSize(format, bytes, &hw, &hh))
    RETURN_IF_ERROR(CheckSize(hw, hh, limits));
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &n)) {
    return absl::InvalidArgumentError(absl::StrCat("could not decode image: ", StbReason()));
  }
  RETURN_IF_ERROR(CheckSize(w, h, limits));
  RETURN_IF_ERROR(CheckEnoughData(format, bytes.size(), w, h));
  if (absl::Status complete = CheckComplete(format, bytes); !complete.ok()) return complete;

  Image out;
  int dw = 0, dh = 0, dn = 0;
  if (format == Format::kPng && IsGrey16Png(bytes)) {
    std::unique_ptr<stbi_us, StbiFree> grey(stbi_load_16_from_memory(data, len, &dw, &dh, &dn, 1));
    if (!grey)
      return absl::InvalidArgumentError(absl::StrCat("could not decode image: ", StbReason()));
    out.width = dw;
    out.height = dh;
    out.pixels.resize(static_cast<size_t>(dw) * dh * 3);
    for (size_t i = 0, count = static_cast<size_t>(dw) * dh; i < count; ++i) {
      const uint8_t v = static_cast<uint8_t>(std::min<int>(grey.get()[i], 255));
      std::memset(&out.pixels[i * 3], v, 3);
    }
  } else {
    // req_comp = 3 is exactly convert("RGB"): grey replicated, palette expanded, alpha dropped (not
    // composited), 16-bit reduced to the high byte; GIF yields its first frame.
    std::unique_ptr<stbi_uc, StbiFree> rgb(stbi_load_from_memory(data, len, &dw, &dh, &dn, 3));
    if (!rgb)
      return absl::InvalidArgumentError(absl::StrCat("could not decode image: ", StbReason()));
    out.width = dw;
    out.height = dh;
    out.pixels.assign(rgb.get(), rgb.get() + static_cast<size_t>(dw) * dh * 3);
  }
  out.channels = 3;
  if (dw != w || dh != h) {  // stb's header and full decode disagreeing would mean a lying file
    return absl::InvalidArgumentError(absl::StrCat("could not decode image: header says ", w, "x",
                                                   h, " but decoded ", dw, "x", dh));
  }

  if (format == Format::kJpeg || format == Format::kPng) {
    const int orientation = ReadExifOrientation(bytes);
    if (orientation != 1) out = ApplyOrientation(out, orientation);
  }
  return out;
}

}  // namespace pg::image
