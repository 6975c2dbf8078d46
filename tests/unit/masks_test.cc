// Box and mask arithmetic of the reference app, checked by hand-computed values.
#include "server/engine/masks.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <tuple>
#include <vector>

using namespace pg::engine;

CATCH_TEST_CASE("mask logits map to grey like the reference app", "[masks]") {
  std::array<float, 64 * 64> logits{};
  logits[0] = -3.0f;  // clipped to 0
  logits[1] = 0.0f;   // 0.5 * 255 = 127.5 -> 127 (truncation, as astype(uint8))
  logits[2] = 1.0f;   // 255
  logits[3] = 7.0f;   // clipped to 255
  logits[4] = 0.5f;   // 0.75 * 255 = 191.25 -> 191
  auto img = MaskImage64(logits);
  CATCH_REQUIRE(img.width == 64);
  CATCH_REQUIRE(img.channels == 1);
  CATCH_CHECK(img.pixels[0] == 0);
  CATCH_CHECK(img.pixels[1] == 127);
  CATCH_CHECK(img.pixels[2] == 255);
  CATCH_CHECK(img.pixels[3] == 255);
  CATCH_CHECK(img.pixels[4] == 191);
}

CATCH_TEST_CASE("loc tokens become model-input coordinates and original-image boxes", "[masks]") {
  // loc order is y1, x1, y2, x2; outputs are x_min, y_min, x_max, y_max.
  std::array<int, 4> loc = {100, 200, 700, 1023};
  CATCH_CHECK(LocToCoordinates(loc, 448, 448) == std::array<int, 4>{87, 43, 447, 306});
  // int(200/1024*640)=125, int(100/1024*480)=46, int(1023/1024*640)=639, int(700/1024*480)=328
  CATCH_CHECK(LocToCoordinates(loc, 640, 480) == std::array<int, 4>{125, 46, 639, 328});
  // round(125.0)=125, round(46.875)=47, round(639.375)=639, round(328.125)=328
  CATCH_CHECK(LocToBox(loc, 640, 480) == std::array<int, 4>{125, 47, 639, 328});
  // Python rounds half to even: 512/1024*5 = 2.5 -> 2
  CATCH_CHECK(LocToBox({512, 512, 512, 512}, 5, 5)[0] == 2);
}

CATCH_TEST_CASE("full masks are pasted into the box and thresholded", "[masks]") {
  pg::image::Image m64{64, 64, 1, std::vector<uint8_t>(64 * 64, 255)};
  auto full = FullMask(m64, {10, 20, 30, 25}, 50, 40);
  CATCH_REQUIRE(full.width == 50);
  CATCH_REQUIRE(full.height == 40);
  int on = 0;
  for (int y = 0; y < 40; ++y) {
    for (int x = 0; x < 50; ++x) {
      const bool inside = x >= 10 && x < 30 && y >= 20 && y < 25;
      const uint8_t v = full.pixels[y * 50 + x];
      CATCH_CHECK((v == 255) == inside);
      on += v == 255;
    }
  }
  CATCH_CHECK(on == 20 * 5);
  // An empty or inverted box leaves the canvas empty.
  auto none = FullMask(m64, {30, 20, 10, 25}, 50, 40);
  for (auto v : none.pixels) CATCH_CHECK(v == 0);
}

namespace {

// A 64x64 mask with structure in every direction (a disc and a stripe), so that resizing matters.
pg::image::Image TestMask64() {
  pg::image::Image m{64, 64, 1, std::vector<uint8_t>(64 * 64)};
  for (int y = 0; y < 64; ++y) {
    for (int x = 0; x < 64; ++x) {
      const int dx = x - 30, dy = y - 34;
      m.pixels[y * 64 + x] = static_cast<uint8_t>(dx * dx + dy * dy < 400 ? 200
                                                  : (x + 2 * y) % 61 < 7  ? 150
                                                                          : 40);
    }
  }
  return m;
}

}  // namespace

CATCH_TEST_CASE("RowResizer rows equal ResizeBicubic", "[masks]") {
  const pg::image::Image m = TestMask64();
  pg::image::Image rgb{17, 9, 3, std::vector<uint8_t>(17 * 9 * 3)};
  for (size_t i = 0; i < rgb.pixels.size(); ++i) rgb.pixels[i] = static_cast<uint8_t>(i * 37 % 251);
  for (const auto& [src, w, h] :
       std::vector<std::tuple<pg::image::Image, int, int>>{{m, 64, 64},
                                                           {m, 200, 64},
                                                           {m, 64, 300},
                                                           {m, 333, 171},
                                                           {m, 20, 30},
                                                           {m, 1, 1},
                                                           {m, 5, 700},
                                                           {rgb, 40, 3},
                                                           {rgb, 17, 30}}) {
    CATCH_CAPTURE(src.channels, w, h);
    const pg::image::Image want = pg::image::ResizeBicubic(src, w, h);
    const pg::image::RowResizer rows(src, w, h);
    std::vector<uint8_t> got(static_cast<size_t>(w) * src.channels);
    for (int y = 0; y < h; ++y) {
      rows.Row(y, got.data());
      CATCH_REQUIRE(std::equal(got.begin(), got.end(),
                               want.pixels.begin() + static_cast<size_t>(y) * got.size()));
    }
  }
}

CATCH_TEST_CASE("FullMaskPng decodes to the pixels of EncodePng(FullMask)", "[masks]") {
  const pg::image::Image m = TestMask64();
  struct Case {
    std::array<int, 4> box;
    int width, height;
  };
  for (const Case& c : std::vector<Case>{{{10, 20, 30, 25}, 50, 40},
                                         {{0, 0, 640, 480}, 640, 480},
                                         {{-30, 100, 900, 470}, 640, 480},
                                         {{37, 11, 101, 75}, 128, 96},
                                         {{300, 2, 1999, 997}, 2000, 1000},
                                         {{30, 20, 10, 25}, 50, 40},
                                         {{5, 5, 6, 6}, 7, 7},
                                         {{0, 0, 1, 1}, 1, 1}}) {
    CATCH_CAPTURE(c.box[0], c.box[1], c.box[2], c.box[3], c.width, c.height);
    for (bool has_mask : {true, false}) {
      auto old_png = has_mask ? pg::image::EncodePng(FullMask(m, c.box, c.width, c.height))
                              : pg::image::EncodePng(pg::image::Image{
                                    c.width, c.height, 1,
                                    std::vector<uint8_t>(static_cast<size_t>(c.width) * c.height)});
      auto new_png = FullMaskPng(has_mask ? &m : nullptr, c.box, c.width, c.height);
      CATCH_REQUIRE(old_png.ok());
      CATCH_REQUIRE(new_png.ok());
      auto old_px = pg::image::DecodeImage(*old_png);
      auto new_px = pg::image::DecodeImage(*new_png);
      CATCH_REQUIRE(old_px.ok());
      CATCH_REQUIRE(new_px.ok());
      CATCH_CHECK(new_px->width == c.width);
      CATCH_CHECK(new_px->height == c.height);
      CATCH_CHECK(new_px->pixels == old_px->pixels);
      // Same PNG kind as before (8-bit greyscale: PIL mode "L"), so clients read it unchanged.
      CATCH_CHECK(new_png->substr(24, 2) == old_png->substr(24, 2));
      CATCH_CHECK(new_png->substr(24, 2) == std::string("\x08\x00", 2));
    }
  }
}
