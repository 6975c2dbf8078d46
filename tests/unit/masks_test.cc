// Box and mask arithmetic of the reference app, checked by hand-computed values.
#include "server/engine/masks.h"

#include <catch2/catch.hpp>

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
