// ParseAnswer against big_vision's detection/segmentation grammar, one table row per shape of
// answer.
#include "server/text/answer.h"

#include <catch2/catch.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

using pg::text::DetectedObject;
using pg::text::ParseAnswer;
using Seg = std::array<int, 16>;

constexpr Seg kSegA = {12, 99, 5, 0, 127, 64, 3, 3, 8, 1, 2, 77, 100, 31, 42, 9};
constexpr Seg kSegB = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

std::string Locs(int y1, int x1, int y2, int x2) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "<loc%04d><loc%04d><loc%04d><loc%04d>", y1, x1, y2, x2);
  return buf;
}

std::string Segs(const Seg& seg, size_t count = 16) {
  std::string out;
  char buf[16];
  for (size_t i = 0; i < count; ++i) {
    std::snprintf(buf, sizeof(buf), "<seg%03d>", seg[i]);
    out += buf;
  }
  return out;
}

struct Expected {
  std::array<int, 4> loc;
  std::optional<Seg> seg;
  std::string label;
};

struct Row {
  std::string name;
  std::string answer;
  std::vector<Expected> objects;
};

}  // namespace

CATCH_TEST_CASE("ParseAnswer follows big_vision's grammar") {
  const std::vector<Row> rows = {
      {"single object with mask",
       Locs(123, 45, 600, 700) + " " + Segs(kSegA) + " left wheel",
       {{{123, 45, 600, 700}, kSegA, "left wheel"}}},
      {"decoded answer without spaces",
       Locs(1, 2, 3, 4) + Segs(kSegA) + "cat",
       {{{1, 2, 3, 4}, kSegA, "cat"}}},
      {"multi object with ; separators",
       Locs(123, 45, 600, 700) + " " + Segs(kSegA) + " left wheel ; " + Locs(1, 2, 1000, 1023) +
           " " + Segs(kSegB) + " car; " + Locs(0, 0, 1023, 1023) + Segs(kSegB) + " sky",
       {{{123, 45, 600, 700}, kSegA, "left wheel"},
        {{1, 2, 1000, 1023}, kSegB, "car"},
        {{0, 0, 1023, 1023}, kSegB, "sky"}}},
      {"box without mask (detect)",
       Locs(10, 20, 30, 40) + " cat ; " + Locs(50, 60, 70, 80) + " dog",
       {{{10, 20, 30, 40}, std::nullopt, "cat"}, {{50, 60, 70, 80}, std::nullopt, "dog"}}},
      {"mix of boxes with and without masks",
       Locs(10, 20, 30, 40) + " cat ; " + Locs(50, 60, 70, 80) + " " + Segs(kSegB) + " dog",
       {{{10, 20, 30, 40}, std::nullopt, "cat"}, {{50, 60, 70, 80}, kSegB, "dog"}}},
      {"box without label", Locs(1, 2, 3, 4), {{{1, 2, 3, 4}, std::nullopt, ""}}},
      {"truncated after 2 locs", "<loc0010><loc0020>", {}},
      {"truncated after 2 locs of the second object",
       Locs(1, 2, 3, 4) + Segs(kSegA) + " cat ; <loc0010><loc0020>",
       {{{1, 2, 3, 4}, kSegA, "cat"}}},
      {"truncated after 7 segs keeps the box",
       Locs(10, 20, 30, 40) + " " + Segs(kSegA, 7),
       {{{10, 20, 30, 40}, std::nullopt, ""}}},
      {"truncated segs, parsing continues with the next object",
       Locs(10, 20, 30, 40) + " " + Segs(kSegA, 7) + " cat ; " + Locs(5, 6, 7, 8) + " " +
           Segs(kSegB) + " dog",
       {{{10, 20, 30, 40}, std::nullopt, ""}, {{5, 6, 7, 8}, kSegB, "dog"}}},
      {"empty", "", {}},
      {"garbage", "no objects here; <loc> <loc12345> <seg001> ;;; <<>>", {}},
      {"loc out of range drops that object only",
       Locs(10, 1500, 30, 40) + " " + Segs(kSegA) + " ghost ; " + Locs(1, 2, 3, 4) + " cat",
       {{{1, 2, 3, 4}, std::nullopt, "cat"}}},
      {"seg out of range keeps the box without mask",
       Locs(10, 20, 30, 40) + " " + Segs({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 200}) +
           " cat",
       {{{10, 20, 30, 40}, std::nullopt, "cat"}}},
      {"labels with spaces and unicode",
       Locs(1, 2, 3, 4) + " big  red  car ; " + Locs(5, 6, 7, 8) + " 猫 café 🐱 ",
       {{{1, 2, 3, 4}, std::nullopt, "big  red  car"}, {{5, 6, 7, 8}, std::nullopt, "猫 café 🐱"}}},
      {"leading text is skipped",
       "Sure! here:\n" + Locs(1, 2, 3, 4) + " cat",
       {{{1, 2, 3, 4}, std::nullopt, "cat"}}},
      {"trailing <eos>",
       Locs(1, 2, 3, 4) + " " + Segs(kSegA) + " cat<eos>",
       {{{1, 2, 3, 4}, kSegA, "cat"}}},
      {"special tokens anywhere are ignored",
       "<bos><pad>" + Locs(1, 2, 3, 4).insert(9, "<eos>") + " " + Segs(kSegA).insert(16, "<pad>") +
           " ca<unk>t ; <eos>" + Locs(5, 6, 7, 8) + " dog<eos><pad><pad>",
       {{{1, 2, 3, 4}, kSegA, "cat"}, {{5, 6, 7, 8}, std::nullopt, "dog"}}},
      {"3-digit loc is not a loc",
       "<loc123><loc0001><loc0002><loc0003> x ; " + Locs(1, 2, 3, 4) + " y",
       {{{1, 2, 3, 4}, std::nullopt, "y"}}},
      {"3-digit loc inside an object breaks it", "<loc0001><loc0002><loc123><loc0004> x", {}},
      {"semicolon without space",
       Locs(1, 2, 3, 4) + " a;" + Locs(5, 6, 7, 8) + " b",
       {{{1, 2, 3, 4}, std::nullopt, "a"}, {{5, 6, 7, 8}, std::nullopt, "b"}}},
      {"label stops at < and the next object follows directly",
       Locs(1, 2, 3, 4) + " a" + Locs(5, 6, 7, 8) + "b",
       {{{1, 2, 3, 4}, std::nullopt, "a"}, {{5, 6, 7, 8}, std::nullopt, "b"}}},
      {"same label twice is kept twice",
       Locs(1, 2, 3, 4) + " a ; " + Locs(1, 2, 3, 4) + " a",
       {{{1, 2, 3, 4}, std::nullopt, "a"}, {{1, 2, 3, 4}, std::nullopt, "a"}}},
      {"extra seg tokens after 16 are skipped",
       Locs(1, 2, 3, 4) + Segs(kSegA) + Segs(kSegB, 2) + " z ; " + Locs(5, 6, 7, 8) + " w",
       {{{1, 2, 3, 4}, kSegA, ""}, {{5, 6, 7, 8}, std::nullopt, "w"}}},
  };
  for (const Row& row : rows) {
    CATCH_SECTION(row.name) {
      CATCH_CAPTURE(row.answer);
      const std::vector<DetectedObject> got = ParseAnswer(row.answer);
      CATCH_REQUIRE(got.size() == row.objects.size());
      for (size_t i = 0; i < got.size(); ++i) {
        CATCH_CAPTURE(i);
        CATCH_CHECK(got[i].loc == row.objects[i].loc);
        CATCH_CHECK(got[i].seg == row.objects[i].seg);
        CATCH_CHECK(got[i].label == row.objects[i].label);
      }
    }
  }
}

CATCH_TEST_CASE("ParseAnswer survives arbitrary bytes") {
  std::mt19937 rng(3);
  const std::vector<std::string> parts = {"<loc0001>", "<loc1023>", "<loc9999>", "<seg000>",
                                          "<seg127>",  "<seg999>",  "<eos>",     " ; ",
                                          ";",         "<",         ">",         "label",
                                          " ",         "\n",        "<loc",      "\xFF\xFE"};
  for (int i = 0; i < 2000; ++i) {
    std::string text;
    const int n = static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) {
      if (rng() % 4 == 0) {
        text.push_back(static_cast<char>(rng()));
      } else {
        text += parts[rng() % parts.size()];
      }
    }
    for (const DetectedObject& obj : ParseAnswer(text)) {
      for (int v : obj.loc) CATCH_REQUIRE((v >= 0 && v <= 1023));
      if (obj.seg) {
        for (int v : *obj.seg) CATCH_REQUIRE((v >= 0 && v <= 127));
      }
      CATCH_REQUIRE(obj.label.find_first_of(";<>") == std::string::npos);
    }
  }
  CATCH_CHECK(ParseAnswer(std::string(100000, '<')).empty());
  CATCH_CHECK(ParseAnswer(std::string("\0\0<loc0001>", 11)).empty());
}
