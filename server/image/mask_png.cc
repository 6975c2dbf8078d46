// EncodeGreyPngRows: a PNG written directly with zlib. stb_image_write holds the whole image, tries
// five PNG filters on every row and deflates at level 8 with its own matcher: ~1.3 s for one
// 7000x7000 mask. Masks are runs of 0 and 255, so filter None and zlib's run-length strategy
// compress them well; and the rows outside the box are one run of zero bytes (a row's filter byte
// is 0 too), which is not compressed at all: it is spliced from deflate blocks of zeros made once.
// A deflate block made from a fresh stream refers to no earlier data, so such blocks can follow
// each other in any order once each piece ends byte-aligned (Z_SYNC_FLUSH).
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/image/image.h"

namespace pg::image {
namespace {

void Be32(std::string* out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(b, 4);
}

// length, type, data, CRC of type + data.
void Chunk(std::string* out, const char type[4], const std::string& data) {
  Be32(out, static_cast<uint32_t>(data.size()));
  const size_t at = out->size();
  out->append(type, 4);
  out->append(data);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(out->data() + at),
              static_cast<uInt>(data.size() + 4));
  Be32(out, static_cast<uint32_t>(crc));
}

// One raw deflate piece (no zlib header, not final, ending byte-aligned) from a fresh stream.
class Piece {
 public:
  Piece() { ok_ = deflateInit2(&z_, 1, Z_DEFLATED, -15, 8, Z_RLE) == Z_OK; }
  ~Piece() {
    if (ok_) deflateEnd(&z_);
  }
  Piece(const Piece&) = delete;
  Piece& operator=(const Piece&) = delete;

  bool Add(const unsigned char* data, size_t size, std::string* out) {
    z_.next_in = const_cast<unsigned char*>(data);
    z_.avail_in = static_cast<uInt>(size);
    return Pump(Z_NO_FLUSH, out);
  }
  bool Finish(std::string* out) { return Pump(Z_SYNC_FLUSH, out); }
  bool ok() const { return ok_; }

 private:
  bool Pump(int flush, std::string* out) {
    if (!ok_) return false;
    unsigned char buf[1 << 16];
    do {
      z_.next_out = buf;
      z_.avail_out = sizeof(buf);
      if (deflate(&z_, flush) == Z_STREAM_ERROR) return false;
      out->append(reinterpret_cast<const char*>(buf), sizeof(buf) - z_.avail_out);
    } while (z_.avail_out == 0);
    return true;
  }

  z_stream z_{};
  bool ok_ = false;
};

constexpr size_t kBigRun = size_t{1} << 20, kSmallRun = size_t{1} << 12;

// Deflate pieces of kBigRun and kSmallRun zero bytes, made once.
const std::string& ZeroPiece(size_t size) {
  static const std::string* pieces = [] {
    auto* p = new std::string[2];
    const std::vector<unsigned char> zeros(kBigRun);
    for (int i = 0; i < 2; ++i) {
      Piece piece;
      piece.Add(zeros.data(), i == 0 ? kBigRun : kSmallRun, &p[i]);
      piece.Finish(&p[i]);
    }
    return p;
  }();
  return pieces[size == kBigRun ? 0 : 1];
}

// `count` zero bytes: whole pieces, then the rest deflated.
bool AppendZeros(uint64_t count, std::string* out) {
  for (; count >= kBigRun; count -= kBigRun) out->append(ZeroPiece(kBigRun));
  for (; count >= kSmallRun; count -= kSmallRun) out->append(ZeroPiece(kSmallRun));
  if (count == 0) return true;
  const std::vector<unsigned char> zeros(count);
  Piece piece;
  return piece.Add(zeros.data(), zeros.size(), out) && piece.Finish(out);
}

// adler32 of `count` zero bytes: a stays 1, b grows by 1 a byte.
uLong ZeroAdler(uint64_t count) { return static_cast<uLong>(count % 65521) << 16 | 1; }

}  // namespace

absl::StatusOr<std::string> EncodeGreyPngRows(
    int width, int height, int row_first, int row_end,
    const std::function<void(int y, uint8_t* row)>& fill_row) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeGreyPngRows: zero size ", width, "x", height));
  }
  row_first = std::clamp(row_first, 0, height);
  row_end = std::clamp(row_end, row_first, height);
  const uint64_t stride = static_cast<uint64_t>(width) + 1;  // filter byte 0 + pixels

  std::string z("\x78\x01", 2);  // zlib header: deflate, 32 KB window, no dictionary
  uLong adler = adler32(0L, Z_NULL, 0);
  bool ok = AppendZeros(row_first * stride, &z);
  adler = adler32_combine(adler, ZeroAdler(row_first * stride),
                          static_cast<z_off_t>(row_first * stride));
  if (ok && row_end > row_first) {
    Piece piece;
    std::vector<unsigned char> row(stride);
    for (int y = row_first; y < row_end && ok; ++y) {
      std::memset(row.data(), 0, row.size());
      fill_row(y, row.data() + 1);
      adler = adler32(adler, row.data(), static_cast<uInt>(row.size()));
      ok = piece.Add(row.data(), row.size(), &z);
    }
    ok = ok && piece.Finish(&z);
  }
  const uint64_t tail = (height - row_end) * stride;
  ok = ok && AppendZeros(tail, &z);
  adler = adler32_combine(adler, ZeroAdler(tail), static_cast<z_off_t>(tail));
  if (!ok) return absl::InternalError("EncodeGreyPngRows: deflate failed");
  z.append("\x01\x00\x00\xff\xff", 5);  // the final block: stored, empty
  Be32(&z, static_cast<uint32_t>(adler));

  std::string out("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  Be32(&ihdr, static_cast<uint32_t>(width));
  Be32(&ihdr, static_cast<uint32_t>(height));
  // bit depth 8, greyscale, deflate, adaptive filtering (every row says None), no interlace
  ihdr.append("\x08\x00\x00\x00\x00", 5);
  Chunk(&out, "IHDR", ihdr);
  Chunk(&out, "IDAT", z);
  Chunk(&out, "IEND", "");
  return out;
}

}  // namespace pg::image
