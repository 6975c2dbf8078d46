// The decode budget (server/image/decode_budget.h) and the peak estimate it reserves
// (ReadImageHeader), checked against what stb really allocates (decoder_memory.h).
#include "server/image/decode_budget.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "server/image/decoder_memory.h"
#include "server/image/image.h"

namespace {

using pg::image::DecodeBudget;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const auto kFar = Clock::time_point::max();

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A w x h GIF of a 4-colour pattern without LZW compression: a clear code before every pair of
// literals keeps the code width at 3 bits.
std::string PatternGif(int w, int h) {
  std::string out = "GIF89a";
  auto le16 = [&](int v) {
    out.push_back(static_cast<char>(v & 0xFF));
    out.push_back(static_cast<char>(v >> 8));
  };
  le16(w);
  le16(h);
  out += std::string("\x81\0\0", 3);
  out += std::string("\0\0\0\xff\0\0\0\xff\0\0\0\xff", 12);
  out += ",";
  le16(0);
  le16(0);
  le16(w);
  le16(h);
  out.push_back(0);
  out.push_back(2);  // LZW minimum code size: clear = 4, end = 5
  std::string codes;
  uint32_t acc = 0;
  int bits = 0;
  auto emit = [&](int code) {
    acc |= static_cast<uint32_t>(code) << bits;
    bits += 3;
    while (bits >= 8) {
      codes.push_back(static_cast<char>(acc & 0xFF));
      acc >>= 8;
      bits -= 8;
    }
  };
  const int64_t count = int64_t{w} * h;
  for (int64_t i = 0; i < count; i += 2) {
    emit(4);
    emit(static_cast<int>(i % 4));
    emit(static_cast<int>((i / 7 + 1) % 4));
  }
  emit(5);
  if (bits > 0) codes.push_back(static_cast<char>(acc & 0xFF));
  for (size_t i = 0; i < codes.size(); i += 255) {
    const std::string block = codes.substr(i, 255);
    out.push_back(static_cast<char>(block.size()));
    out += block;
  }
  out.push_back(0);
  out.push_back(';');
  return out;
}

}  // namespace

CATCH_TEST_CASE("DecodeBudget hands out bytes up to its capacity and takes them back",
                "[decode_budget]") {
  DecodeBudget budget(100, milliseconds(100));
  auto a = budget.Reserve(60, kFar);
  CATCH_REQUIRE(a.ok());
  auto b = budget.Reserve(40, kFar);
  CATCH_REQUIRE(b.ok());
  CATCH_CHECK(budget.in_use() == 100);
  // Full: a third request waits max_wait, then is refused as busy.
  const auto t0 = Clock::now();
  auto c = budget.Reserve(1, kFar);
  CATCH_REQUIRE(c.status().code() == absl::StatusCode::kResourceExhausted);
  CATCH_CHECK(Clock::now() - t0 >= milliseconds(100));
  CATCH_CHECK(std::string(c.status().message()).find("busy") != std::string::npos);
  a->Release();
  CATCH_CHECK(budget.in_use() == 40);
  auto d = budget.Reserve(60, kFar);
  CATCH_REQUIRE(d.ok());
  { auto moved = std::move(*d); }  // a moved-to reservation gives its bytes back once
  CATCH_CHECK(budget.in_use() == 40);
}

CATCH_TEST_CASE("DecodeBudget: a waiter gets its bytes when they come back", "[decode_budget]") {
  DecodeBudget budget(100, milliseconds(5000));
  auto held = budget.Reserve(100, kFar);
  CATCH_REQUIRE(held.ok());
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(100));
    held->Release();
  });
  auto waited = budget.Reserve(80, kFar);
  releaser.join();
  CATCH_REQUIRE(waited.ok());
  CATCH_CHECK(budget.in_use() == 80);
}

CATCH_TEST_CASE("DecodeBudget refuses what can never fit, deadlines and cancellation",
                "[decode_budget]") {
  DecodeBudget budget(100 << 20, milliseconds(5000));
  auto huge = budget.Reserve(101 << 20, kFar);
  CATCH_REQUIRE(huge.status().code() == absl::StatusCode::kResourceExhausted);
  CATCH_CHECK(std::string(huge.status().message()).find("--decode_budget_mb 100") !=
              std::string::npos);
  auto all = budget.Reserve(100 << 20, kFar);
  CATCH_REQUIRE(all.ok());
  auto late = budget.Reserve(1, Clock::now() + milliseconds(50));
  CATCH_CHECK(late.status().code() == absl::StatusCode::kDeadlineExceeded);
  auto cancelled = budget.Reserve(1, kFar, [] { return true; });
  CATCH_CHECK(cancelled.status().code() == absl::StatusCode::kCancelled);
  CATCH_CHECK(budget.in_use() == 100 << 20);
}

CATCH_TEST_CASE("DecodeBudget serves waiters in arrival order", "[decode_budget]") {
  // A big request waiting first is not overtaken by a small one that would fit.
  DecodeBudget budget(100, milliseconds(5000));
  auto held = budget.Reserve(50, kFar);
  CATCH_REQUIRE(held.ok());
  std::atomic<int> order{0};
  int big_at = 0, small_at = 0;
  std::thread big([&] {
    auto r = budget.Reserve(100, kFar);
    CATCH_CHECK(r.ok());
    big_at = ++order;
    std::this_thread::sleep_for(milliseconds(50));
  });
  std::this_thread::sleep_for(milliseconds(100));  // big is queued first
  std::thread small([&] {
    auto r = budget.Reserve(10, kFar);
    CATCH_CHECK(r.ok());
    small_at = ++order;
  });
  std::this_thread::sleep_for(milliseconds(100));
  CATCH_CHECK(order == 0);  // small fits in the free 50 but waits behind big
  held->Release();
  big.join();
  small.join();
  CATCH_CHECK(big_at == 1);
  CATCH_CHECK(small_at == 2);
}

CATCH_TEST_CASE("ReadImageHeader's peak covers what stb allocates plus the RGB copy",
                "[decode_budget]") {
  const std::string dir = std::string(PG_FIXTURES_DIR) + "/image/";
  std::vector<std::pair<std::string, std::string>> files;
  for (const char* name :
       {"rgb.png", "rgba.png", "grey.png", "grey16.png", "grey_alpha16.png", "rgb16.png",
        "palette.png", "palette_trns.png", "bilevel.png", "orient1.jpg", "orient6.jpg",
        "palette.bmp", "rgb.bmp", "two_frames.gif"}) {
    files.emplace_back(name, ReadFile(dir + name));
  }
  files.emplace_back("chelsea.png", ReadFile(std::string(PG_FIXTURES_DIR) + "/images/chelsea.png"));
  // A larger RGB PNG made here, so that fixed overheads do not hide a per-pixel factor.
  pg::image::Image big{1500, 1000, 3, std::vector<uint8_t>(1500 * 1000 * 3)};
  for (size_t i = 0; i < big.pixels.size(); ++i) big.pixels[i] = static_cast<uint8_t>(i * 7 / 5);
  files.emplace_back("1500x1000.png", *pg::image::EncodePng(big));
  files.emplace_back("1500x1000.gif", PatternGif(1500, 1000));
  for (const auto& [name, bytes] : files) {
    CATCH_CAPTURE(name);
    auto header = pg::image::ReadImageHeader(bytes);
    CATCH_REQUIRE(header.ok());
    pg::image::ResetDecoderPeak();
    const int64_t before = pg::image::ThreadDecoderMemory().current;
    auto decoded = pg::image::DecodeImage(bytes);
    CATCH_REQUIRE(decoded.ok());
    const auto after = pg::image::ThreadDecoderMemory();
    CATCH_CHECK(after.current == before);  // stb freed everything it allocated
    const int64_t px = int64_t{header->width} * header->height;
    // stb's own peak, or its result (at most RGBA) next to the RGB copy DecodeImage makes of it.
    const int64_t measured = std::max(after.peak - before, 7 * px);
    CATCH_CAPTURE(measured, header->decode_peak_bytes, px);
    CATCH_CHECK(measured <= header->decode_peak_bytes);
    // ... and not wildly more than needed (the budget would refuse images needlessly).
    CATCH_CHECK(header->decode_peak_bytes <= 4 * measured + (2 << 20));
  }
}
