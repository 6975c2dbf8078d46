// The Gemma tokenizer against tokenizers' own outputs (tests/fixtures/tokenizer-golden.json) and
// the edge cases the golden file does not cover.
#include "server/text/tokenizer.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace {

using pg::text::EncodePrompt;
using pg::text::Tokenizer;
using Ids = std::vector<int32_t>;

const std::string kTokenizerPath = std::string(PG_FIXTURES_DIR) + "/paligemma2-tiny/tokenizer.json";

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Loaded once per process: every test case below shares it.
const Tokenizer& Tok() {
  static const Tokenizer* tokenizer = [] {
    const auto t0 = std::chrono::steady_clock::now();
    auto loaded = Tokenizer::FromFile(kTokenizerPath);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
      std::abort();
    }
    std::fprintf(stderr, "tokenizer.json loaded in %.3f s\n", SecondsSince(t0));
    return new Tokenizer(std::move(loaded).value());
  }();
  return *tokenizer;
}

nlohmann::json Golden() {
  std::ifstream in(std::string(PG_FIXTURES_DIR) + "/tokenizer-golden.json");
  return nlohmann::json::parse(in);
}

int32_t Id(const std::string& token) {
  auto id = Tok().TokenToId(token);
  CATCH_REQUIRE(id.has_value());
  return *id;
}

Ids Concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

CATCH_TEST_CASE("tokenizer loads the fixture with the PaliGemma special ids") {
  const auto t0 = std::chrono::steady_clock::now();
  auto loaded = Tokenizer::FromFile(kTokenizerPath);
  const double seconds = SecondsSince(t0);
  CATCH_REQUIRE(loaded.ok());
  // Timing is reported, not asserted: performance lives in the benchmark (a loaded CI machine
  // varies 5x).
  std::cout << "tokenizer.json loaded in " << seconds << " s\n";
  const Tokenizer& tok = *loaded;
  CATCH_CHECK(tok.vocab_size() == 257153);
  const nlohmann::json golden =
      Golden();  // not Golden()[..] in the range-for: the temporary would die first
  for (const auto& [token, id] : golden["special_ids"].items()) {
    CATCH_CAPTURE(token);
    CATCH_CHECK(tok.TokenToId(token) == std::optional<int32_t>(id.get<int32_t>()));
    CATCH_CHECK(tok.IdToToken(id.get<int32_t>()) == token);
  }
  CATCH_CHECK(tok.IsSpecial(1));
  CATCH_CHECK(tok.IsSpecial(2));
  CATCH_CHECK(tok.IsSpecial(257152));        // <image>
  CATCH_CHECK_FALSE(tok.IsSpecial(256000));  // <loc0000> is not special
  CATCH_CHECK_FALSE(tok.IsSpecial(257024));  // <seg000>
  CATCH_CHECK_FALSE(tok.IsSpecial(108));
  CATCH_CHECK_FALSE(tok.IsSpecial(-1));
  CATCH_CHECK_FALSE(tok.IsSpecial(1 << 30));
  CATCH_CHECK(tok.IdToToken(-1).empty());
  CATCH_CHECK(tok.IdToToken(257153).empty());
  CATCH_CHECK_FALSE(tok.TokenToId("no such token").has_value());
}

CATCH_TEST_CASE("tokenizer encodes every golden case like tokenizers") {
  const Tokenizer& tok = Tok();
  const nlohmann::json golden = Golden();  // kept alive for the loop (see above)
  for (const auto& c : golden["encode"]) {
    const std::string text = c["text"].get<std::string>();
    CATCH_CAPTURE(text);
    const Ids ids = tok.Encode(text);
    CATCH_CHECK(ids == c["ids"].get<Ids>());
    CATCH_CHECK(EncodePrompt(tok, text) == c["prefix_ids"].get<Ids>());
    std::vector<std::string> pieces;
    for (int32_t id : ids) pieces.push_back(tok.IdToToken(id));
    CATCH_CHECK(pieces == c["pieces"].get<std::vector<std::string>>());
    CATCH_CHECK(tok.Decode(ids, true) == text);
  }
}

CATCH_TEST_CASE("tokenizer decodes every golden case like tokenizers") {
  const Tokenizer& tok = Tok();
  const nlohmann::json golden = Golden();  // kept alive for the loop (see above)
  for (const auto& c : golden["decode"]) {
    const Ids ids = c["ids"].get<Ids>();
    CATCH_CHECK(tok.Decode(ids, true) == c["skip_special"].get<std::string>());
    CATCH_CHECK(tok.Decode(ids, false) == c["keep_special"].get<std::string>());
  }
}

CATCH_TEST_CASE("tokenizer handles empty and whitespace-only text") {
  const Tokenizer& tok = Tok();
  CATCH_CHECK(tok.Encode("").empty());
  CATCH_CHECK(tok.Decode({}, true).empty());
  // Spaces are normalised to U+2581 and BPE-merged: "▁▁▁" is one vocabulary token.
  CATCH_CHECK(tok.Encode("   ") == Ids{140});
  CATCH_CHECK(tok.Encode(" ") == Ids{235248});
  CATCH_CHECK(tok.Decode(tok.Encode("       "), true) == "       ");
  CATCH_CHECK(EncodePrompt(tok, " ") == Ids{2, 235248, 108});
  // Newline runs are added tokens (108 = "\n" … 138), matched longest first.
  CATCH_CHECK(tok.Encode("\n\n\n") == Ids{110});
  CATCH_CHECK(EncodePrompt(tok, "a\n") == Concat({{2}, tok.Encode("a"), {109}}));
}

CATCH_TEST_CASE("tokenizer matches every kind of added token in raw text") {
  const Tokenizer& tok = Tok();
  // Special (<image>, <bos>, <start_of_turn>), non-special (<loc>, <seg>, <mask>, <table>, "\n\n"),
  // and the literal "▁▁" added token: added tokens are not normalised, so a typed U+2581 U+2581
  // matches it while two spaces only reach it through BPE.
  const std::string text =
      "<image><bos>find "
      "<loc0001><loc1023><seg012><seg127>\n\n<start_of_turn><table><mask>▁▁x<unused0>";
  const Ids expected = Concat({{257152, 2},
                               tok.Encode("find "),
                               {256001, 257023, 257036, 257151, 109, 106, 169, 4, 139},
                               tok.Encode("x"),
                               {Id("<unused0>")}});
  CATCH_CHECK(tok.Encode(text) == expected);
  CATCH_CHECK(tok.Decode(expected, false) == text.substr(0, text.find("▁▁x")) + "  x<unused0>");
  // skip_special drops only <image>, <bos>, <start_of_turn>.
  CATCH_CHECK(tok.Decode(expected, true) ==
              "find <loc0001><loc1023><seg012><seg127>\n\n<table><mask>  x<unused0>");
  // Near misses stay plain text.
  const Ids near = tok.Encode("<loc123><seg1000><imag");
  for (int32_t id : near) CATCH_CHECK(id < 256000);
  CATCH_CHECK(tok.Decode(near, false) == "<loc123><seg1000><imag");
}

CATCH_TEST_CASE("tokenizer byte fallback round-trips characters outside the vocabulary") {
  const Tokenizer& tok = Tok();
  // U+2070E is not in the vocabulary: its four UTF-8 bytes become <0xF0><0xA0><0x9C><0x8E>.
  const std::string rare = "\xF0\xA0\x9C\x8E";
  const Ids ids = tok.Encode(rare);
  CATCH_CHECK(ids == Ids{Id("<0xF0>"), Id("<0xA0>"), Id("<0x9C>"), Id("<0x8E>")});
  CATCH_CHECK(tok.Decode(ids, true) == rare);
  const std::string mixed = "a " + rare + " b\x01\x7f";
  CATCH_CHECK(tok.Decode(tok.Encode(mixed), true) == mixed);
  // A byte run that is not valid UTF-8 decodes to one U+FFFD per byte (tokenizers' ByteFallback).
  CATCH_CHECK(tok.Decode({Id("<0xF0>"), Id("<0xA0>")}, true) == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CATCH_CHECK(tok.Decode({Id("<0xF0>"), Id("<0xA0>"), 235250, Id("<0x41>")}, true) ==
              "\xEF\xBF\xBD\xEF\xBF\xBD" + tok.IdToToken(235250) + "A");
}

CATCH_TEST_CASE("tokenizer replaces invalid UTF-8 input by U+FFFD before encoding") {
  const Tokenizer& tok = Tok();
  // Documented behaviour: ill-formed bytes are decoded like Python's errors="replace" (one U+FFFD
  // per maximal ill-formed subpart), then encoded like any text.
  const std::string fffd = "\xEF\xBF\xBD";
  CATCH_CHECK(tok.Encode("a\xFF"
                         "b") == tok.Encode("a" + fffd + "b"));
  CATCH_CHECK(tok.Encode("\xE6\x97") == tok.Encode(fffd));         // truncated 3-byte sequence
  CATCH_CHECK(tok.Encode("\xC0\xAF") == tok.Encode(fffd + fffd));  // overlong form
  CATCH_CHECK(tok.Encode("\xED\xA0\x80") == tok.Encode(fffd + fffd + fffd));  // surrogate
  CATCH_CHECK(tok.Encode(std::string("x\0y", 3)).size() >= 2);  // NUL is an ordinary byte
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string junk(rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    const Ids ids = tok.Encode(junk);
    for (int32_t id : ids) CATCH_REQUIRE((id >= 0 && id < tok.vocab_size()));
    tok.Decode(ids, true);
  }
}

CATCH_TEST_CASE("tokenizer Decode skips out-of-range ids") {
  const Tokenizer& tok = Tok();
  CATCH_CHECK(tok.Decode({-1, 2731, 257153, 1 << 30, 11478, -2147483647 - 1}, true) ==
              " left wheel");
  CATCH_CHECK(tok.Decode({999999999}, false).empty());
}

CATCH_TEST_CASE("tokenizer encodes a 10 KB prompt losslessly") {
  const Tokenizer& tok = Tok();
  std::mt19937 rng(1);
  const std::vector<std::string> words = {"segment", "the",    "left", "wheel",     "of", "a",
                                          "café",    "日本語", "🐱",    "<loc0010>", "\n", "  "};
  std::string prompt;
  while (prompt.size() < 10240) prompt += words[rng() % words.size()] + " ";
  const auto t0 = std::chrono::steady_clock::now();
  const Ids ids = tok.Encode(prompt);
  const double seconds = SecondsSince(t0);
  std::cout << "10 KB prompt encoded in " << seconds * 1000 << " ms\n";
  CATCH_CHECK(ids.size() > 1000);
  CATCH_CHECK(tok.Decode(ids, false) == prompt);
  // One long run without spaces or added tokens is a single BPE word of 10 K symbols.
  const std::string run(10240, 'a');
  const auto t1 = std::chrono::steady_clock::now();
  const Ids run_ids = tok.Encode(run);
  std::cout << "10 KB single-word run encoded in " << SecondsSince(t1) * 1000 << " ms\n";
  CATCH_CHECK(tok.Decode(run_ids, false) == run);
}

CATCH_TEST_CASE("tokenizer rejects malformed tokenizer.json with a clear status") {
  auto missing = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  CATCH_CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CATCH_CHECK(std::string(missing.status().message()).find("/nonexistent/tokenizer.json") !=
              std::string::npos);

  struct Case {
    const char* name;
    std::string json;
    const char* message;
  };
  const std::string ok_model =
      R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})";
  const std::vector<Case> cases = {
      {"empty", "", "parse"},
      {"not json", "this is not json", "parse"},
      {"truncated", ReadFile(kTokenizerPath).substr(0, 100000), "parse"},
      {"array", "[]", "top level"},
      {"no model", R"({"added_tokens": []})", "\"model\""},
      {"no vocab", R"({"model": {"type": "BPE", "merges": []}})", "model.vocab"},
      {"no merges", R"({"model": {"type": "BPE", "vocab": {"a": 0}}})", "model.merges"},
      {"vocab not object", R"({"model": {"vocab": [], "merges": []}})", "model.vocab"},
      {"bad id", R"({"model": {"vocab": {"a": "x"}, "merges": []}})", "vocab id"},
      {"negative id", R"({"model": {"vocab": {"a": -3}, "merges": []}})", "out of range"},
      {"merge not in vocab", R"({"model": {"vocab": {"a": 0}, "merges": ["a c"]}})", "'c'"},
      {"merge result not in vocab", R"({"model": {"vocab": {"a": 0}, "merges": ["a a"]}})", "'aa'"},
      {"merge without space", R"({"model": {"vocab": {"a": 0}, "merges": ["aa"]}})", "two tokens"},
      {"unigram", R"({"model": {"type": "Unigram", "vocab": [], "merges": []}})", "Unigram"},
      {"pre_tokenizer", "{" + ok_model + R"(, "pre_tokenizer": {"type": "ByteLevel"}})",
       "ByteLevel"},
      {"added token without id", "{" + ok_model + R"(, "added_tokens": [{"content": "x"}]})", "id"},
  };
  for (const Case& c : cases) {
    CATCH_CAPTURE(c.name);
    auto t = Tokenizer::FromJson(c.json);
    CATCH_REQUIRE_FALSE(t.ok());
    CATCH_CAPTURE(t.status().message());
    CATCH_CHECK(std::string(t.status().message()).find(c.message) != std::string::npos);
  }

  // A minimal valid file works: no normalizer or decoder (tokens are joined with spaces).
  auto tiny = Tokenizer::FromJson("{" + ok_model + "}");
  CATCH_REQUIRE(tiny.ok());
  CATCH_CHECK(tiny->Encode("abab") == Ids{2, 2});
  CATCH_CHECK(tiny->Decode({2, 0}, false) == "ab a");
}

CATCH_TEST_CASE("tokenizer BPE applies merges by rank, leftmost first on ties") {
  // Ranks: "b c" (0) before "a b" (1): "abc" -> a + bc, not ab + c.
  auto t = Tokenizer::FromJson(R"({"model": {"type": "BPE",
      "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "aa": 5, "aaa": 6},
      "merges": ["b c", "a b", "a a", "aa a"]}})");
  CATCH_REQUIRE(t.ok());
  CATCH_CHECK(t->Encode("abc") == Ids{0, 4});
  CATCH_CHECK(t->Encode("ab") == Ids{3});
  // "aaaa": the leftmost "a a" merges first (aa a a), then "a a" again (aa aa); "aa a" never
  // applies.
  CATCH_CHECK(t->Encode("aaaa") == Ids{5, 5});
  CATCH_CHECK(t->Encode("aaa") == Ids{6});
}
