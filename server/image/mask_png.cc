// EncodeGreyPngRows: a PNG written directly with zlib, row by row. stb_image_write holds the whole
// image, tries five PNG filters on every row and deflates at level 8 with its own slow matcher:
// 0.7 s for one 7000x7000 mask. Masks are runs of 0 and 255, so filter None and zlib's run-length
// strategy compress them about as well at a small fraction of the time.
#include <zlib.h>

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
void Chunk(std::string* out, const char type[4], const unsigned char* data, size_t size) {
  Be32(out, static_cast<uint32_t>(size));
  const size_t at = out->size();
  out->append(type, 4);
  if (size > 0) out->append(reinterpret_cast<const char*>(data), size);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(out->data() + at), static_cast<uInt>(size + 4));
  Be32(out, static_cast<uint32_t>(crc));
}

}  // namespace

absl::StatusOr<std::string> EncodeGreyPngRows(
    int width, int height, int row_first, int row_end,
    const std::function<void(int y, uint8_t* row)>& fill_row) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeGreyPngRows: zero size ", width, "x", height));
  }
  std::string out("\x89PNG\r\n\x1a\n", 8);
  unsigned char ihdr[13];
  for (int i = 0; i < 4; ++i) {
    ihdr[i] = static_cast<unsigned char>(static_cast<uint32_t>(width) >> (24 - 8 * i));
    ihdr[4 + i] = static_cast<unsigned char>(static_cast<uint32_t>(height) >> (24 - 8 * i));
  }
  ihdr[8] = 8;  // bit depth
  ihdr[9] = 0;  // greyscale
  ihdr[10] = ihdr[11] = ihdr[12] =
      0;  // deflate, adaptive filtering (each row says None), no interlace
  Chunk(&out, "IHDR", ihdr, sizeof(ihdr));

  z_stream z{};
  if (deflateInit2(&z, 1, Z_DEFLATED, 15, 8, Z_RLE) != Z_OK) {
    return absl::InternalError("EncodeGreyPngRows: deflateInit2 failed");
  }
  std::vector<unsigned char> row(static_cast<size_t>(width) + 1);  // filter byte 0 + pixels
  std::vector<unsigned char> idat(1 << 18);
  absl::Status status;
  auto pump = [&](int flush) {
    do {
      z.next_out = idat.data();
      z.avail_out = static_cast<uInt>(idat.size());
      const int rc = deflate(&z, flush);
      if (rc == Z_STREAM_ERROR) {
        status = absl::InternalError("EncodeGreyPngRows: deflate failed");
        return;
      }
      const size_t produced = idat.size() - z.avail_out;
      if (produced > 0) Chunk(&out, "IDAT", idat.data(), produced);
    } while (z.avail_out == 0);
  };
  for (int y = 0; y < height && status.ok(); ++y) {
    std::memset(row.data(), 0, row.size());
    if (y >= row_first && y < row_end) fill_row(y, row.data() + 1);
    z.next_in = row.data();
    z.avail_in = static_cast<uInt>(row.size());
    pump(Z_NO_FLUSH);
  }
  if (status.ok()) pump(Z_FINISH);
  deflateEnd(&z);
  if (!status.ok()) return status;
  Chunk(&out, "IEND", nullptr, 0);
  return out;
}

}  // namespace pg::image
