// The whole pipeline on the tiny bundle: image bytes + prompt in, the API's fields out; and the
// CLI.
#include <torch/script.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <memory>

#include "server/engine/masks.h"
#include "server/engine/segmenter.h"
#include "server/image/image.h"
#include "tests/unit/test_support.h"

namespace {

using pg::engine::Segmenter;
using pg::engine::SegmentRequest;
using pg::testing::Fixture;

const Segmenter& Engine() {
  static std::unique_ptr<Segmenter> engine = [] {
    auto created = Segmenter::Create(pg::testing::TinyBundle());
    if (!created.ok()) throw std::runtime_error(std::string(created.status().message()));
    return std::move(created).value();
  }();
  return *engine;
}

SegmentRequest CatRequest(int max_new_tokens = 8) {
  SegmentRequest r;
  r.image_bytes = pg::testing::ReadFile(Fixture("images/chelsea.png"));
  r.prompt = "segment cat";
  r.options.max_new_tokens = max_new_tokens;
  return r;
}

std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  pclose(pipe);
  return out;
}

}  // namespace

CATCH_TEST_CASE("segmenting a photo returns the reference app's fields", "[engine]") {
  auto result = Engine().Segment(CatRequest());
  CATCH_REQUIRE(result.ok());
  CATCH_CHECK(result->original_width == 451);
  CATCH_CHECK(result->original_height == 300);
  auto image = pg::image::DecodeImage(result->image_png);
  CATCH_REQUIRE(image.ok());
  CATCH_CHECK(image->width == 56);
  CATCH_CHECK(image->height == 56);
  CATCH_CHECK(result->generated_token_ids.size() <= 8);
  CATCH_CHECK(!result->generated_token_ids.empty());
  CATCH_CHECK(result->text ==
              Engine().tokenizer().Decode(result->generated_token_ids, /*skip_special=*/true));
  // <bos> "segment cat" "\n"
  CATCH_CHECK(result->prompt_token_ids == std::vector<int32_t>{2, 32318, 4401, 108});
  CATCH_CHECK(result->timings.total_ms > 0);
}

CATCH_TEST_CASE("the same request twice gives the same answer", "[engine]") {
  auto a = Engine().Segment(CatRequest(6));
  auto b = Engine().Segment(CatRequest(6));
  CATCH_REQUIRE(a.ok());
  CATCH_REQUIRE(b.ok());
  CATCH_CHECK(a->generated_token_ids == b->generated_token_ids);
  CATCH_CHECK(a->image_png == b->image_png);
}

CATCH_TEST_CASE("answers become boxes and masks, a box without seg tokens included", "[engine]") {
  std::string answer = "<loc0100><loc0200><loc0700><loc1023>";
  for (int i = 0; i < 16; ++i)
    answer += "<seg0" + std::string(i < 10 ? "0" : "") + std::to_string(i) + ">";
  answer += " cat ; <loc0000><loc0000><loc0512><loc0512> dog";
  auto masks = Engine().MasksFromAnswer(answer, 640, 480, /*full_masks=*/true);
  CATCH_REQUIRE(masks.ok());
  CATCH_REQUIRE(masks->size() == 2);
  const auto& cat = (*masks)[0];
  CATCH_CHECK(cat.label == "cat");
  CATCH_CHECK(cat.has_mask);
  CATCH_CHECK(cat.coordinates == std::array<int, 4>{10, 5, 55, 38});  // int(v/1024*56)
  CATCH_CHECK(cat.box == std::array<int, 4>{125, 47, 639, 328});
  // codes 0..15 are the VAE golden's first row: the grey mask must be that mask.
  auto golden = pg::testing::ReadJson(Fixture("vae/vae-golden.json"));
  std::array<float, 64 * 64> logits{};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) logits[y * 64 + x] = golden["masks"][0][y][x].get<float>();
  auto expected = pg::engine::MaskImage64(logits);
  auto grey = pg::image::DecodeImage(cat.mask_png);
  CATCH_REQUIRE(grey.ok());
  CATCH_REQUIRE(grey->width == 64);
  int differing = 0;
  for (int i = 0; i < 64 * 64; ++i) {
    // DecodeImage gives RGB; the PNG is grey, replicated.
    int diff = std::abs(int(grey->pixels[i * 3]) - int(expected.pixels[i]));
    CATCH_CHECK(diff <= 1);
    differing += diff != 0;
  }
  CATCH_CHECK(differing < 64);  // float rounding may flip a handful of truncations
  auto full = pg::image::DecodeImage(cat.full_mask_png);
  CATCH_REQUIRE(full.ok());
  CATCH_CHECK(full->width == 640);
  CATCH_CHECK(full->height == 480);
  const auto& dog = (*masks)[1];
  CATCH_CHECK(dog.label == "dog");
  CATCH_CHECK_FALSE(dog.has_mask);
  CATCH_CHECK(dog.coordinates == std::array<int, 4>{0, 0, 28, 28});
}

namespace {

// An answer of `boxes` objects with segmentation tokens, boxes of several sizes up to the whole
// image (loc tokens are y_min, x_min, y_max, x_max in 1/1024).
std::string SegAnswer(int boxes) {
  const int locs[6][4] = {{0, 0, 1023, 1023},   {100, 50, 900, 700}, {512, 512, 1023, 1023},
                          {10, 600, 300, 1000}, {0, 0, 512, 1023},   {300, 200, 700, 800}};
  std::string answer;
  for (int b = 0; b < boxes; ++b) {
    if (b > 0) answer += " ; ";
    for (int v : locs[b % 6]) {
      char loc[16];
      std::snprintf(loc, sizeof(loc), "<loc%04d>", v);
      answer += loc;
    }
    for (int i = 0; i < 16; ++i) {
      char seg[16];
      std::snprintf(seg, sizeof(seg), "<seg%03d>", (i * 7 + b * 13) % 128);
      answer += seg;
    }
    answer += " thing";
  }
  return answer;
}

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

CATCH_TEST_CASE("six full-size masks of a 7000x7000 image: the pixels of the old encoder",
                "[engine][masks]") {
  // The tiny model finds nothing in a blank image, so the answer is crafted: six boxes, one of them
  // the whole image. Each full mask must decode to exactly the canvas the old path encoded
  // (FullMask of the 64x64 mask); the times are printed (bench material, not asserted).
  const int side = 7000;
  const std::string answer = SegAnswer(6);
  CATCH_REQUIRE(Engine().MasksFromAnswer(answer, side, side, false).ok());  // warm the VAE up
  auto t0 = std::chrono::steady_clock::now();
  auto without = Engine().MasksFromAnswer(answer, side, side, /*full_masks=*/false);
  const double without_ms = MsSince(t0);
  t0 = std::chrono::steady_clock::now();
  auto with = Engine().MasksFromAnswer(answer, side, side, /*full_masks=*/true);
  const double with_ms = MsSince(t0);
  CATCH_REQUIRE(without.ok());
  CATCH_REQUIRE(with.ok());
  CATCH_REQUIRE(with->size() == 6);
  size_t bytes = 0;
  double old_ms = 0;
  for (const auto& m : *with) {
    CATCH_REQUIRE(m.has_mask);
    bytes += m.full_mask_png.size();
    auto grey = pg::image::DecodeImage(m.mask_png);
    CATCH_REQUIRE(grey.ok());
    pg::image::Image mask64{64, 64, 1, std::vector<uint8_t>(64 * 64)};
    for (int i = 0; i < 64 * 64; ++i) mask64.pixels[i] = grey->pixels[i * 3];
    const auto t1 = std::chrono::steady_clock::now();
    const pg::image::Image want = pg::engine::FullMask(mask64, m.box, side, side);
    CATCH_REQUIRE(pg::image::EncodePng(want).ok());
    old_ms += MsSince(t1);
    auto got = pg::image::DecodeImage(m.full_mask_png);
    CATCH_REQUIRE(got.ok());
    CATCH_REQUIRE(got->width == side);
    CATCH_REQUIRE(got->height == side);
    bool same = true;
    for (size_t i = 0; i < want.pixels.size() && same; ++i)
      same = got->pixels[i * 3] == want.pixels[i];
    CATCH_CHECK(same);
  }
  std::printf(
      "[measure] 6 masks of %dx%d: %.0f ms without full masks, %.0f ms with (%zu bytes of "
      "full-mask PNG); the old FullMask + EncodePng path: %.0f ms\n",
      side, side, without_ms, with_ms, bytes, old_ms);
}

CATCH_TEST_CASE("full masks past max_full_mask_pixels are omitted, boxes and 64x64 masks kept",
                "[engine][masks]") {
  pg::engine::EngineOptions options;
  options.max_full_mask_pixels = 2 * 640 * 480;  // two full masks of 640x480
  auto engine = Segmenter::Create(pg::testing::TinyBundle(), options);
  CATCH_REQUIRE(engine.ok());
  auto masks = (*engine)->MasksFromAnswer(SegAnswer(3), 640, 480, /*full_masks=*/true);
  CATCH_REQUIRE(masks.ok());
  CATCH_REQUIRE(masks->size() == 3);
  for (int i = 0; i < 3; ++i) {
    CATCH_CAPTURE(i);
    CATCH_CHECK((*masks)[i].has_mask);
    CATCH_CHECK_FALSE((*masks)[i].mask_png.empty());
    CATCH_CHECK((*masks)[i].full_mask_png.empty() == (i == 2));
  }
}

CATCH_TEST_CASE("bad requests are InvalidArgument with a precise message", "[engine][errors]") {
  auto expect_invalid = [](SegmentRequest r, const std::string& words) {
    auto result = Engine().Segment(r);
    CATCH_REQUIRE_FALSE(result.ok());
    CATCH_CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
    CATCH_CHECK_THAT(std::string(result.status().message()), Catch::Contains(words));
  };
  auto r = CatRequest();
  r.prompt = "";
  expect_invalid(r, "prompt is empty");
  r.prompt = "   \n";
  expect_invalid(r, "prompt is empty");
  r.prompt = std::string(5000, 'a');
  expect_invalid(r, "limit");
  r = CatRequest();
  r.options.max_new_tokens = 0;
  expect_invalid(r, "max_new_tokens");
  r.options.max_new_tokens = 100000;
  expect_invalid(r, "max_new_tokens");
  r = CatRequest();
  r.image_bytes = "";
  expect_invalid(r, "image");
  r.image_bytes = "GIF89a-truncated";
  expect_invalid(r, "image");
  r.image_bytes = std::string("\x89PNG\r\n\x1a\n", 8) + std::string(40, '\0');
  expect_invalid(r, "image");
}

CATCH_TEST_CASE("paligemma-segment prints the engine's answer as JSON", "[cli]") {
  const char* build = std::getenv("PG_BUILD_DIR");
  CATCH_REQUIRE(build != nullptr);
  const std::string cmd = std::string(build) + "/paligemma-segment --bundle " +
                          pg::testing::TinyBundle() + " --image " + Fixture("images/chelsea.png") +
                          " --prompt 'segment cat' --max-new-tokens 8 --show-tokens";
  auto out = nlohmann::json::parse(RunCommand(cmd), nullptr, false);
  CATCH_REQUIRE_FALSE(out.is_discarded());
  auto expected = Engine().Segment(CatRequest(8));
  CATCH_REQUIRE(expected.ok());
  CATCH_CHECK(out["generated_token_ids"].get<std::vector<int32_t>>() ==
              expected->generated_token_ids);
  CATCH_CHECK(out["prompt_token_ids"].get<std::vector<int32_t>>() == expected->prompt_token_ids);
  CATCH_CHECK(out["text"] == expected->text);
  CATCH_CHECK(out["image"].is_string());
  CATCH_CHECK(out["masks"].is_array());

  // A bad argument exits non-zero with a message instead of JSON.
  const std::string bad = std::string(build) + "/paligemma-segment --bundle " +
                          pg::testing::TinyBundle() + " --image /nonexistent.png --prompt x 2>&1";
  CATCH_CHECK_THAT(RunCommand(bad), Catch::Contains("cannot read image file"));
}
