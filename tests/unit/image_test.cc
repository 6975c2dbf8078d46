// Tests of server/image against goldens that PIL 9.4 computed (scripts/make-image-fixtures.py
// writes them into tests/fixtures/image/; python is not needed here).
#include "server/image/image.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
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

}  // namespace
}  // namespace pg::image
