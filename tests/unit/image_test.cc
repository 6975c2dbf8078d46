// Tests of server/image against goldens that PIL 9.4 computed (scripts/make-image-fixtures.py
// writes them into tests/fixtures/image/; python is not needed here).
#include "server/image/image.h"

#include <sys/resource.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>

#include "absl/strings/escaping.h"
#include "server/image/exif.h"

namespace pg::image {
namespace {

const std::string kDir = std::string(PG_FIXTURES_DIR) + "/image/";

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CATCH_REQUIRE(f.good());
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

nlohmann::json Manifest() { return nlohmann::json::parse(ReadFile(kDir + "manifest.json")); }

Image RawImage(const std::string& file, int w, int h, int c) {
  std::string bytes = ReadFile(kDir + file);
  CATCH_REQUIRE(bytes.size() == static_cast<size_t>(w) * h * c);
  return Image{w, h, c, std::vector<uint8_t>(bytes.begin(), bytes.end())};
}

struct Diff {
  int max = 0;
  double mean = 0;
};

Diff Compare(const Image& a, const Image& b) {
  CATCH_REQUIRE(a.width == b.width);
  CATCH_REQUIRE(a.height == b.height);
  CATCH_REQUIRE(a.channels == b.channels);
  CATCH_REQUIRE(a.pixels.size() == b.pixels.size());
  Diff d;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const int v = std::abs(int{a.pixels[i]} - int{b.pixels[i]});
    d.max = std::max(d.max, v);
    d.mean += v;
  }
  d.mean /= std::max<size_t>(1, a.pixels.size());
  return d;
}

std::string ErrorOf(std::string_view bytes, const DecodeLimits& limits = {}) {
  auto r = DecodeImage(bytes, limits);
  CATCH_REQUIRE_FALSE(r.ok());
  CATCH_CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

using Catch::Matchers::Contains;

// ------------------------------------------------------------------------------------------------
// resize

CATCH_TEST_CASE("ResizeBicubic is bit-exact with PIL Image.resize BICUBIC") {
  int cases = 0;
  const nlohmann::json manifest = Manifest();
  for (const auto& c : manifest["resize"]) {
    const Image src = RawImage(c["src"], c["width"], c["height"], c["channels"]);
    const Image want = RawImage(c["out"], c["out_width"], c["out_height"], c["channels"]);
    CATCH_CAPTURE(c["out"].get<std::string>());
    const Image got = ResizeBicubic(src, c["out_width"], c["out_height"]);
    CATCH_CHECK(Compare(got, want).max == 0);
    ++cases;
  }
  CATCH_CHECK(cases >= 18);
}

CATCH_TEST_CASE("ResizeBicubic same size is a copy and handles one pixel") {
  Image src{3, 2, 1, {1, 2, 3, 4, 5, 6}};
  Image same = ResizeBicubic(src, 3, 2);
  CATCH_CHECK(same.pixels == src.pixels);
  Image one{1, 1, 3, {10, 20, 30}};
  Image big = ResizeBicubic(one, 4, 3);
  CATCH_REQUIRE(big.pixels.size() == 4 * 3 * 3);
  for (size_t i = 0; i < big.pixels.size(); ++i) CATCH_CHECK(big.pixels[i] == one.pixels[i % 3]);
}

// --------------------------------------------------------------------------------- preprocessing
// golden

CATCH_TEST_CASE("chelsea.png decode, resize 448 and normalize match the PIL preprocess golden") {
  const auto golden =
      nlohmann::json::parse(ReadFile(std::string(PG_FIXTURES_DIR) + "/preprocess-golden.json"));
  const auto& g = golden["chelsea.png"];
  std::string raw;
  CATCH_REQUIRE(absl::Base64Unescape(g["pixel_values_f32_b64"].get<std::string>(), &raw));
  CATCH_REQUIRE(raw.size() == 3 * 448 * 448 * sizeof(float));
  std::vector<float> want(3 * 448 * 448);
  std::memcpy(want.data(), raw.data(), raw.size());

  auto decoded = DecodeImage(ReadFile(std::string(PG_FIXTURES_DIR) + "/images/chelsea.png"));
  CATCH_REQUIRE(decoded.ok());
  CATCH_CHECK(decoded->width == g["size"][0].get<int>());
  CATCH_CHECK(decoded->height == g["size"][1].get<int>());
  const Image resized = ResizeBicubic(*decoded, 448, 448);
  const std::vector<float> got = Normalize(resized, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});
  CATCH_REQUIRE(got.size() == want.size());
  float max_abs = 0;
  for (size_t i = 0; i < got.size(); ++i) max_abs = std::max(max_abs, std::abs(got[i] - want[i]));
  CATCH_CAPTURE(max_abs);
  CATCH_CHECK(max_abs <= 1e-6f);  // the resize is exact; only float rounding of /255 may differ

  // Denormalize inverts it exactly.
  const Image back = Denormalize(got.data(), 448, 448, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});
  CATCH_CHECK(back.pixels == resized.pixels);
}

CATCH_TEST_CASE("Normalize is CHW float and Denormalize rounds and clamps") {
  Image img{2, 1, 3, {0, 255, 128, 10, 20, 30}};
  auto v = Normalize(img, {0.5f, 0.25f, 0.0f}, {0.5f, 0.5f, 2.0f});
  CATCH_REQUIRE(v.size() == 6);
  CATCH_CHECK(v[0] == Approx(-1.0f));                          // R of pixel 0
  CATCH_CHECK(v[1] == Approx((10 / 255.0f - 0.5f) / 0.5f));    // R of pixel 1
  CATCH_CHECK(v[2] == Approx((255 / 255.0f - 0.25f) / 0.5f));  // G of pixel 0
  CATCH_CHECK(v[5] == Approx((30 / 255.0f) / 2.0f));           // B of pixel 1
  Image grey{1, 1, 1, {51}};
  auto g = Normalize(grey, {0, 0, 0}, {1, 1, 1});
  CATCH_REQUIRE(g.size() == 3);
  for (float x : g) CATCH_CHECK(x == Approx(0.2f));
  const float chw[3] = {5.0f, -7.0f, std::nanf("")};
  Image d = Denormalize(chw, 1, 1, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});
  CATCH_CHECK(d.pixels == std::vector<uint8_t>{255, 0, 0});
}

// -----------------------------------------------------------------------------------------------
// decode

CATCH_TEST_CASE("DecodeImage matches PIL convert(RGB) on lossless formats") {
  int cases = 0;
  const nlohmann::json manifest = Manifest();
  for (const auto& c : manifest["decode"]) {
    CATCH_CAPTURE(c["file"].get<std::string>(), c["note"].get<std::string>());
    auto got = DecodeImage(ReadFile(kDir + c["file"].get<std::string>()));
    CATCH_REQUIRE(got.ok());
    CATCH_CHECK(got->channels == 3);
    const Image want = RawImage(c["expected"], c["width"], c["height"], 3);
    CATCH_CHECK(Compare(*got, want).max == 0);
    ++cases;
  }
  CATCH_CHECK(cases >= 14);
}

CATCH_TEST_CASE("JPEG EXIF orientations 1 to 8 match PIL exif_transpose") {
  int cases = 0;
  int worst = 0;
  const nlohmann::json manifest = Manifest();
  for (const auto& c : manifest["exif"]) {
    const std::string file = c["file"];
    CATCH_CAPTURE(file);
    const std::string bytes = ReadFile(kDir + file);
    CATCH_CHECK(ReadExifOrientation(bytes) == c["orientation"].get<int>());
    auto got = DecodeImage(bytes);
    CATCH_REQUIRE(got.ok());
    const Image want = RawImage(c["expected"], c["width"], c["height"], 3);
    // stb's IDCT and chroma upsampling differ slightly from libjpeg's; a wrong orientation would
    // put 255-level differences on whole 8x8 blocks.
    const Diff d = Compare(*got, want);
    CATCH_CAPTURE(d.max, d.mean);
    CATCH_CHECK(d.max <= 8);     // observed: 2
    CATCH_CHECK(d.mean <= 0.5);  // observed: 0.04
    worst = std::max(worst, d.max);
    ++cases;
  }
  CATCH_CHECK(cases == 9);
}

CATCH_TEST_CASE("Malformed EXIF is ignored, not an error") {
  const Image want = RawImage("bad_exif.expected.rgb", 32, 16, 3);
  for (const char* file : {"bad_exif0.jpg", "bad_exif1.jpg"}) {
    CATCH_CAPTURE(file);
    const std::string bytes = ReadFile(kDir + file);
    CATCH_CHECK(ReadExifOrientation(bytes) == 1);
    auto got = DecodeImage(bytes);
    CATCH_REQUIRE(got.ok());
    CATCH_CHECK(Compare(*got, want).mean <= 4.0);
  }
  // Every prefix of a TIFF structure and random TIFF-looking bytes must parse without reading out
  // of bounds.
  std::string tiff("MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0", 22);
  CATCH_CHECK(OrientationFromTiff(tiff) == 6);
  for (size_t n = 0; n < tiff.size(); ++n) CATCH_CHECK(OrientationFromTiff(tiff.substr(0, n)) == 1);
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string s = (i % 2 ? std::string("II*\0", 4) : std::string("MM\0*", 4));
    s.resize(4 + rng() % 40);
    for (size_t k = 4; k < s.size(); ++k) s[k] = static_cast<char>(rng() % (k < 8 ? 16 : 256));
    const int o = OrientationFromTiff(s);
    CATCH_REQUIRE((o >= 1 && o <= 8));
  }
}

CATCH_TEST_CASE("ApplyOrientation geometry") {
  // 3x2 grey: a b c / d e f
  const Image src{3, 2, 1, {'a', 'b', 'c', 'd', 'e', 'f'}};
  auto s = [](const Image& i) { return std::string(i.pixels.begin(), i.pixels.end()); };
  CATCH_CHECK(s(ApplyOrientation(src, 1)) == "abcdef");
  CATCH_CHECK(s(ApplyOrientation(src, 2)) == "cbafed");
  CATCH_CHECK(s(ApplyOrientation(src, 3)) == "fedcba");
  CATCH_CHECK(s(ApplyOrientation(src, 4)) == "defabc");
  CATCH_CHECK(s(ApplyOrientation(src, 5)) == "adbecf");  // transpose: 2x3
  CATCH_CHECK(s(ApplyOrientation(src, 6)) == "daebfc");  // 90 clockwise
  CATCH_CHECK(s(ApplyOrientation(src, 7)) == "fcebda");  // transverse
  CATCH_CHECK(s(ApplyOrientation(src, 8)) == "cfbead");  // 90 counter-clockwise
  CATCH_CHECK(ApplyOrientation(src, 6).width == 2);
  CATCH_CHECK(ApplyOrientation(src, 6).height == 3);
}

CATCH_TEST_CASE("DecodeImage rejects bad input with clear errors") {
  CATCH_CHECK(ErrorOf("") == "empty image data");
  CATCH_CHECK(ErrorOf("hello, this is text") ==
              "image data is not a supported image (JPEG, PNG, BMP or GIF)");
  CATCH_CHECK_THAT(ErrorOf(std::string("II*\0\x08\0\0\0", 8)),
                   Contains("unsupported image format TIFF"));
  CATCH_CHECK_THAT(ErrorOf(std::string("MM\0*\0\0\0\x08", 8)),
                   Contains("unsupported image format TIFF"));
  CATCH_CHECK_THAT(ErrorOf(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)),
                   Contains("unsupported image format WebP"));
  CATCH_CHECK_THAT(ErrorOf(std::string("8BPS\0\x01", 6)), Contains("unsupported image format PSD"));

  // A header claiming 100000 x 100000: refused from the header, before any pixel buffer.
  CATCH_CHECK(ErrorOf(ReadFile(kDir + "huge_header.png")) ==
              "image is too large: 100000x100000 exceeds 50000000 pixels");

  const std::string png = ReadFile(kDir + "rgb.png");
  DecodeLimits small;
  small.max_pixels = 100;
  CATCH_CHECK(ErrorOf(png, small) == "image is too large: 20x12 exceeds 100 pixels");
  small = {};
  small.max_bytes = 10;
  CATCH_CHECK_THAT(ErrorOf(png, small), Contains("image data is too large"));

  // Zero-sized PNG: IHDR width 0.
  std::string zero = png;
  std::memset(&zero[16], 0, 4);
  CATCH_CHECK(ErrorOf(zero) == "image has zero size: 0x12");
  // A JPEG whose SOF says 0 lines (stb would wait for a DNL marker).
  std::string jpeg = ReadFile(kDir + "orient1.jpg");
  const size_t sof = jpeg.find("\xFF\xC0");
  CATCH_REQUIRE(sof != std::string::npos);
  jpeg[sof + 5] = jpeg[sof + 6] = 0;
  CATCH_CHECK(ErrorOf(jpeg) == "image has zero size: 32x0");
}

// Decompression bombs: small, structurally valid files (the fixtures with their dimensions patched)
// whose header claims 30000 x 30000 (2.7 GB of RGB). Each must be refused from the header with
// InvalidArgument, and the process's peak RSS must not grow by anything near a pixel buffer.
namespace {

uint32_t Crc32(std::string_view data) {  // PNG's CRC (ISO 3309), bitwise: only a few bytes here
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

void PutBe32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>(v >> (24 - 8 * i));
}

long MaxRssKib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

}  // namespace

CATCH_TEST_CASE("Decompression bombs are refused from the header, before a pixel buffer exists") {
  constexpr uint32_t kSide = 30000;
  std::vector<std::pair<std::string, std::string>> bombs;
  {  // PNG: IHDR width/height patched, CRC recomputed so the file stays valid.
    std::string png = ReadFile(kDir + "rgb.png");
    CATCH_REQUIRE(png.substr(12, 4) == "IHDR");
    PutBe32(png, 16, kSide);
    PutBe32(png, 20, kSide);
    PutBe32(png, 29, Crc32(std::string_view(png).substr(12, 17)));
    bombs.emplace_back("png", png);
  }
  {  // JPEG: the SOF0 segment's lines and samples per line.
    std::string jpeg = ReadFile(kDir + "orient1.jpg");
    const size_t sof = jpeg.find("\xFF\xC0");
    CATCH_REQUIRE(sof != std::string::npos);
    jpeg[sof + 5] = jpeg[sof + 7] = static_cast<char>(kSide >> 8);
    jpeg[sof + 6] = jpeg[sof + 8] = static_cast<char>(kSide & 0xFF);
    bombs.emplace_back("jpeg", jpeg);
  }
  {  // GIF: the logical screen (little-endian), and the first frame's descriptor too.
    std::string gif = ReadFile(kDir + "two_frames.gif");
    for (size_t at : {size_t{6}, size_t{8}}) {
      gif[at] = static_cast<char>(kSide & 0xFF);
      gif[at + 1] = static_cast<char>(kSide >> 8);
    }
    const size_t desc = gif.find(',');  // 0x2C image descriptor: x, y, w, h
    CATCH_REQUIRE(desc != std::string::npos);
    for (size_t at : {desc + 5, desc + 7}) {
      gif[at] = static_cast<char>(kSide & 0xFF);
      gif[at + 1] = static_cast<char>(kSide >> 8);
    }
    bombs.emplace_back("gif", gif);
  }
  {  // BMP: BITMAPINFOHEADER width and height (little-endian int32).
    std::string bmp = ReadFile(kDir + "palette.bmp");
    for (size_t at : {size_t{18}, size_t{22}}) {
      for (int i = 0; i < 4; ++i) bmp[at + i] = static_cast<char>(kSide >> (8 * i));
    }
    bombs.emplace_back("bmp", bmp);
  }
  const long before = MaxRssKib();
  for (const auto& [name, bytes] : bombs) {
    CATCH_CAPTURE(name);
    CATCH_CHECK(bytes.size() < 4096);
    CATCH_CHECK(ErrorOf(bytes) == "image is too large: 30000x30000 exceeds 50000000 pixels");
  }
  const long after = MaxRssKib();
  std::printf(
      "[measure] decompression bombs (%zu files < 4 KiB claiming %ux%u): peak RSS %ld -> "
      "%ld KiB\n",
      bombs.size(), kSide, kSide, before, after);
  // 30000 x 30000 x 3 is 2.6 GiB; refusing from the header allocates nothing of that order.
  CATCH_CHECK(after - before < 32 * 1024);
}

// Within the pixel limit, a tiny JPEG or GIF claiming 7000 x 7000 (49 M pixels) is truncated data
// that stb would decode at full cost, filling in zeros (5-7 s and 100-260 MB each before the
// check).
CATCH_TEST_CASE("Small JPEG and GIF files claiming many pixels are refused as truncated") {
  constexpr uint32_t kSide = 7000;
  std::string jpeg = ReadFile(kDir + "orient1.jpg");
  const size_t sof = jpeg.find("\xFF\xC0");
  CATCH_REQUIRE(sof != std::string::npos);
  jpeg[sof + 5] = jpeg[sof + 7] = static_cast<char>(kSide >> 8);
  jpeg[sof + 6] = jpeg[sof + 8] = static_cast<char>(kSide & 0xFF);
  std::string gif = ReadFile(kDir + "two_frames.gif");
  for (size_t at : {size_t{6}, size_t{8}}) {
    gif[at] = static_cast<char>(kSide & 0xFF);
    gif[at + 1] = static_cast<char>(kSide >> 8);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const std::string jpeg_error = ErrorOf(jpeg), gif_error = ErrorOf(gif);
  CATCH_CHECK(jpeg_error.find("truncated JPEG") != std::string::npos);
  CATCH_CHECK(jpeg_error.find("7000x7000") != std::string::npos);
  CATCH_CHECK(gif_error.find("truncated GIF") != std::string::npos);
  std::printf(
      "[measure] %zu-byte JPEG and %zu-byte GIF claiming 7000x7000 refused in %.1f ms\n",
      jpeg.size(), gif.size(),
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  // The fixtures themselves are far above the bound.
  CATCH_CHECK(DecodeImage(ReadFile(kDir + "orient1.jpg")).ok());
  CATCH_CHECK(DecodeImage(ReadFile(kDir + "two_frames.gif")).ok());
}

CATCH_TEST_CASE("DecodeImage never crashes on truncated or corrupted files") {
  std::vector<std::string> files = {"rgb.png",     "orient6.jpg", "rgb.bmp",    "two_frames.gif",
                                    "palette.png", "grey16.png",  "palette.bmp"};
  for (const auto& name : files) {
    const std::string full = ReadFile(kDir + name);
    CATCH_CAPTURE(name);
    // Every truncation is an error (PIL raises "image file is truncated" too) — except a GIF, which
    // stb decodes as far as it goes. (A PNG cut inside IEND still has all its pixels.)
    const size_t end = name.find(".png") != std::string::npos ? full.size() - 12 : full.size();
    for (size_t n = 1; n < end; n += (n < 64 ? 1 : 7)) {
      CATCH_CAPTURE(n);
      auto r = DecodeImage(std::string_view(full).substr(0, n));
      if (name.find(".gif") == std::string::npos) {
        CATCH_CHECK_FALSE(r.ok());
      }
    }
    // Random byte flips: any result is fine as long as it does not crash and sizes are consistent.
    std::mt19937 rng(42);
    for (int i = 0; i < 300; ++i) {
      std::string bad = full;
      for (int k = 0; k < 4; ++k) bad[rng() % bad.size()] = static_cast<char>(rng());
      auto r = DecodeImage(bad);
      if (r.ok()) CATCH_CHECK(r->pixels.size() == static_cast<size_t>(r->width) * r->height * 3);
    }
  }
  // Random bytes, with and without a valid magic.
  std::mt19937 rng(1);
  for (const std::string magic :
       {std::string(), std::string("\xFF\xD8\xFF"), std::string("\x89PNG\r\n\x1a\n"),
        std::string("GIF89a"), std::string("BM")}) {
    for (int i = 0; i < 200; ++i) {
      std::string s = magic;
      const size_t n = rng() % 200;
      for (size_t k = 0; k < n; ++k) s.push_back(static_cast<char>(rng()));
      auto r = DecodeImage(s);
      if (r.ok()) CATCH_CHECK(r->pixels.size() == static_cast<size_t>(r->width) * r->height * 3);
    }
  }
}

CATCH_TEST_CASE("EncodePng round-trips through DecodeImage") {
  const Image rgb = RawImage("resize_noise_rgb.rgb", 23, 17, 3);
  auto png = EncodePng(rgb);
  CATCH_REQUIRE(png.ok());
  auto back = DecodeImage(*png);
  CATCH_REQUIRE(back.ok());
  CATCH_CHECK(back->pixels == rgb.pixels);

  const Image grey = RawImage("resize_noise_grey.grey", 31, 19, 1);
  png = EncodePng(grey);
  CATCH_REQUIRE(png.ok());
  back = DecodeImage(*png);
  CATCH_REQUIRE(back.ok());
  CATCH_REQUIRE(back->pixels.size() == grey.pixels.size() * 3);
  for (size_t i = 0; i < grey.pixels.size(); ++i) {
    CATCH_CHECK(back->pixels[i * 3] == grey.pixels[i]);
    CATCH_CHECK(back->pixels[i * 3 + 2] == grey.pixels[i]);
  }

  CATCH_CHECK_FALSE(EncodePng(Image{2, 2, 4, std::vector<uint8_t>(16)}).ok());
  CATCH_CHECK_FALSE(EncodePng(Image{2, 2, 3, std::vector<uint8_t>(5)}).ok());
  CATCH_CHECK_FALSE(EncodePng(Image{0, 2, 3, {}}).ok());
}

CATCH_TEST_CASE("A PNG chunk claiming more bytes than were sent is refused before stb sees it") {
  // A valid PNG whose IDAT length field is raised to 0xFB77FFFF: stb would grow its buffer to that
  // size before reading (found by fuzz_image; tests/fuzz/regressions/fuzz_image/).
  auto png = EncodePng(RawImage("resize_noise_rgb.rgb", 23, 17, 3));
  CATCH_REQUIRE(png.ok());
  std::string bytes = *png;
  const size_t idat = bytes.find("IDAT");
  CATCH_REQUIRE(idat != std::string::npos);
  CATCH_REQUIRE(DecodeImage(bytes).ok());
  bytes.replace(idat - 4, 4, std::string("\xFB\x77\xFF\xFF", 4));
  auto r = DecodeImage(bytes);
  CATCH_REQUIRE_FALSE(r.ok());
  CATCH_CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  CATCH_CHECK(std::string(r.status().message()).find("truncated PNG") != std::string::npos);
  // Cut inside the last chunk: refused the same way.
  auto cut = DecodeImage(std::string_view(*png).substr(0, png->size() - 6));
  CATCH_REQUIRE_FALSE(cut.ok());
  CATCH_CHECK(std::string(cut.status().message()).find("truncated PNG") != std::string::npos);
}

}  // namespace
}  // namespace pg::image
