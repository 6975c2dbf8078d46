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

// SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): a frame header (precision, size, components).
bool IsStartOfFrame(unsigned char m) {
  return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

// Walks a JPEG's marker segments from just after SOI: skips fill bytes (FF FF) and the
// standalone markers (TEM, RST0-7), calls `stop(pos, marker)` at every other marker and steps over
// its segment by the declared length until `stop` returns true. Returns where the walk ended: that
// marker's position, or where the data stops looking like a marker (or runs out). Both the
// truncation check and the frame-header reader use it so they agree on where segments lie.
template <typename Stop>
size_t WalkJpegSegments(std::string_view b, Stop&& stop) {
  const auto* d = reinterpret_cast<const unsigned char*>(b.data());
  size_t pos = 2;
  while (pos + 4 <= b.size() && d[pos] == 0xFF) {
    const unsigned char m = d[pos + 1];
    if (m == 0xFF) {
      ++pos;
      continue;
    }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
      pos += 2;
      continue;
    }
    if (stop(pos, m)) break;
    pos += 2 + (static_cast<size_t>(d[pos + 2]) << 8 | d[pos + 3]);
  }
  return pos;
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
    const size_t pos = WalkJpegSegments(b, [](size_t, unsigned char m) { return m == 0xDA; });
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
bool HeaderSize(Format format, std::string_view b, int64_t* w, int64_t* h,
                bool* progressive = nullptr) {
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
      bool found = false;
      WalkJpegSegments(b, [&](size_t pos, unsigned char m) {
        if (m == 0xDA || m == 0xD9) return true;
        if (!IsStartOfFrame(m)) return false;
        if (pos + 9 <= b.size()) {  // precision, height, width
          *h = be16(pos + 5);
          *w = be16(pos + 7);
          // SOF2, SOF6, SOF10, SOF14: progressive (stb decodes SOF2 only; the rest it refuses).
          if (progressive != nullptr) *progressive = (m & 0x03) == 0x02;
          found = true;
        }
        return true;
      });
      return found;
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

// The PNG header's bit depth (1..16) and channels before any expansion (palette counts as 1).
int PngSampleBytes(std::string_view b) {
  if (b.size() < 26) return 1;
  const int depth = static_cast<unsigned char>(b[24]);
  return depth > 8 ? 2 : 1;
}

// Sum over the frame's components of their share of the pixels (H_i * V_i / (Hmax * Vmax)); `n`
// full planes when the frame header cannot be read.
double JpegPlanes(std::string_view b, int n) {
  const auto* d = reinterpret_cast<const unsigned char*>(b.data());
  double planes = n;
  WalkJpegSegments(b, [&](size_t pos, unsigned char m) {
    if (m == 0xDA || m == 0xD9) return true;
    if (!IsStartOfFrame(m)) return false;
    // A start-of-frame header: stop here whether or not its component table fits in the data.
    if (pos + 10 > b.size()) return true;
    const int count = d[pos + 9];
    if (count < 1 || pos + 10 + 3 * static_cast<size_t>(count) > b.size()) return true;
    int hmax = 1, vmax = 1;
    for (int i = 0; i < count; ++i) {
      const unsigned char f = d[pos + 11 + 3 * i];
      hmax = std::max(hmax, f >> 4);
      vmax = std::max(vmax, f & 15);
    }
    planes = 0;
    for (int i = 0; i < count; ++i) {
      const unsigned char f = d[pos + 11 + 3 * i];
      planes += static_cast<double>(std::max(1, f >> 4) * std::max(1, f & 15)) / (hmax * vmax);
    }
    return true;
  });
  return planes;
}

// stb's peak bytes per pixel for a full decode to RGB, from reading its allocations (checked
// against the counting allocator in image_test.cc for each format): GIF keeps the RGBA frame, its
// background and a one-byte history (9 per pixel) and converts to RGB; PNG holds the inflated rows
// and the expanded image at once (plus the compressed data); JPEG holds each component's samples
// (a progressive one also two bytes per DCT coefficient) and the RGB result; BMP its result and the
// conversion.
int64_t StbPeakBytes(Format format, std::string_view b, int64_t w, int64_t h, int n,
                     bool progressive) {
  const int64_t px = w * h;
  switch (format) {
    case Format::kGif:
      return 9 * px;  // RGBA frame, background, history; then the frame and our RGB copy (7)
    case Format::kPng: {
      const int64_t raw = static_cast<int64_t>(n) * PngSampleBytes(b);
      const int64_t expanded = std::max<int64_t>(raw, 4);  // palette -> RGB(A), grey -> RGB
      return (raw + expanded) * px + (px * raw) / 8 + static_cast<int64_t>(b.size());
    }
    case Format::kJpeg: {
      // Components are padded to whole MCUs (up to 16 pixels more each way); subsampled chroma
      // holds a fraction of the pixels (4:2:0: 1 + 1/4 + 1/4).
      const double planes = JpegPlanes(b, n);
      const auto samples = static_cast<int64_t>(planes * static_cast<double>((w + 16) * (h + 16)));
      return (progressive ? 3 : 1) * samples + 3 * px;
    }
    case Format::kBmp:
      return 7 * px;
    default:
      return 9 * px;
  }
}

struct Checked {
  Format format = Format::kUnknown;
  int width = 0, height = 0, channels = 0;
  bool progressive = false;
};

// Every check that needs no decoding, in the order DecodeImage has always applied them.
absl::StatusOr<Checked> CheckBeforeDecoding(std::string_view bytes, const DecodeLimits& limits) {
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
  Checked c;
  c.format = format;
  if (int64_t hw, hh; HeaderSize(format, bytes, &hw, &hh, &c.progressive))
    RETURN_IF_ERROR(CheckSize(hw, hh, limits));
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &n)) {
    return absl::InvalidArgumentError(absl::StrCat("could not decode image: ", StbReason()));
  }
  RETURN_IF_ERROR(CheckSize(w, h, limits));
  RETURN_IF_ERROR(CheckEnoughData(format, bytes.size(), w, h));
  if (absl::Status complete = CheckComplete(format, bytes); !complete.ok()) return complete;
  c.width = w;
  c.height = h;
  c.channels = n;
  return c;
}

}  // namespace

absl::StatusOr<ImageHeader> ReadImageHeader(std::string_view bytes, const DecodeLimits& limits) {
  ASSIGN_OR_RETURN(const Checked c, CheckBeforeDecoding(bytes, limits));
  ImageHeader out;
  out.width = c.width;
  out.height = c.height;
  out.channels = c.channels;
  out.progressive = c.progressive;
  const int64_t px = int64_t{c.width} * c.height;
  // stb's buffers, or (whichever is more) its RGB result and our copy of it, or that copy and an
  // EXIF-rotated one; then the resize's intermediate rows and some slack for the small buffers.
  out.decode_peak_bytes =
      std::max(StbPeakBytes(c.format, bytes, c.width, c.height, c.channels, c.progressive),
               6 * px) +
      3 * int64_t{1024} * c.height + (1 << 20);
  return out;
}

absl::StatusOr<Image> DecodeImage(std::string_view bytes, const DecodeLimits& limits) {
  ASSIGN_OR_RETURN(const Checked c, CheckBeforeDecoding(bytes, limits));
  const Format format = c.format;
  const int w = c.width, h = c.height;
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());

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
  } else if (format == Format::kGif) {
    // stb decodes a GIF frame as RGBA, and converting it to RGB inside stb happens while the
    // frame's background and history buffers (5 bytes a pixel) are still held: 12 bytes a pixel at
    // the peak. Dropping alpha here, once stb has freed those, is the same conversion at 9.
    std::unique_ptr<stbi_uc, StbiFree> rgba(stbi_load_from_memory(data, len, &dw, &dh, &dn, 4));
    if (!rgba)
      return absl::InvalidArgumentError(absl::StrCat("could not decode image: ", StbReason()));
    out.width = dw;
    out.height = dh;
    const size_t count = static_cast<size_t>(dw) * dh;
    out.pixels.resize(count * 3);
    const stbi_uc* src = rgba.get();
    for (size_t i = 0; i < count; ++i) std::memcpy(&out.pixels[i * 3], &src[i * 4], 3);
  } else {
    // req_comp = 3 is exactly convert("RGB"): grey replicated, palette expanded, alpha dropped (not
    // composited), 16-bit reduced to the high byte.
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
