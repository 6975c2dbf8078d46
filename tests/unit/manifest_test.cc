// ParseManifest (LibTorch-free): the valid tiny manifest parses, and every input that
// tests/fuzz/fuzz_manifest found crashing or slipping through is an InvalidArgument naming the
// field.
#include "server/model/manifest.h"

#include <catch2/catch.hpp>
#include <string>

#include "tests/unit/test_support.h"

namespace {

std::string Regression(const std::string& name) {
  return pg::testing::ReadFile(std::string(PG_SOURCE_DIR) +
                               "/tests/fuzz/regressions/fuzz_manifest/" + name);
}

std::string TinyManifestText() {
  return pg::testing::ReadFile(std::string(PG_SOURCE_DIR) +
                               "/tests/fuzz/corpus/fuzz_manifest/tiny.json");
}

}  // namespace

CATCH_TEST_CASE("ParseManifest accepts the tiny bundle's manifest") {
  const std::string text = TinyManifestText();
  auto m = pg::model::ParseManifest(text, "tiny.json");
  CATCH_REQUIRE(m.ok());
  CATCH_CHECK(m->num_layers == 2);
  CATCH_CHECK(m->image_id == 257152);
  CATCH_CHECK(m->files.at("vae.pt").bytes == 4771471);
}

CATCH_TEST_CASE("ParseManifest takes every format version this server loads, and no other") {
  const std::string tiny = TinyManifestText();
  const std::string key = "\"format_version\":1";
  const size_t at = tiny.find(key);
  CATCH_REQUIRE(at != std::string::npos);
  for (int version = 0; version <= 5; ++version) {
    std::string text = tiny;
    text.replace(at, key.size(), "\"format_version\":" + std::to_string(version));
    auto m = pg::model::ParseManifest(text, "tiny.json");
    CATCH_INFO("format_version " << version);
    if (version >= 1 && version <= 3) {
      CATCH_REQUIRE(m.ok());
      CATCH_CHECK(m->format_version == version);
    } else {
      CATCH_REQUIRE_FALSE(m.ok());
      CATCH_CHECK(m.status().code() == absl::StatusCode::kInvalidArgument);
      CATCH_CHECK_THAT(std::string(m.status().message()),
                       Catch::Contains("unsupported format_version " + std::to_string(version)));
    }
  }
}

CATCH_TEST_CASE("ParseManifest refuses the fuzzer's findings with InvalidArgument") {
  const struct {
    const char* file;
    const char* message_part;
  } cases[] = {
      {"files-sha256-not-string.json", "files entry 'vision.pt' has the wrong type"},  // threw
      {"files-bytes-not-integer.json", "files entry 'vision.pt' has the wrong type"},  // threw
      {"num-layers-1e30.json", "'text.num_layers' has the wrong type"},                // UB
      {"num-layers-2pow32-plus-1.json", "'text.num_layers' is out of range"},          // became 1
      {"mean-1e300.json", "'image.mean' is out of range"},                             // UB
      {"token-id-negative.json", "'tokens.bos' (-5) is not a token id"},
  };
  for (const auto& c : cases) {
    CATCH_INFO(c.file);
    auto m = pg::model::ParseManifest(Regression(c.file), c.file);
    CATCH_REQUIRE_FALSE(m.ok());
    CATCH_CHECK(m.status().code() == absl::StatusCode::kInvalidArgument);
    CATCH_CHECK_THAT(std::string(m.status().message()), Catch::Contains(c.message_part));
  }
}

CATCH_TEST_CASE("ParseManifest never throws on damaged text") {
  for (const char* text : {"", "{", "[]", "null", "{\"format_version\":1}",
                           "{\"files\":{\"a\":{\"sha256\":[1]}}}", "\xff\xfe"}) {
    CATCH_CHECK_NOTHROW(pg::model::ParseManifest(text, "x"));
    CATCH_CHECK_FALSE(pg::model::ParseManifest(text, "x").ok());
  }
}

namespace {

// The tiny manifest with one "key":value inside its section replaced.
std::string WithField(const std::string& key, const std::string& value) {
  std::string text = TinyManifestText();
  const std::string needle = "\"" + key + "\":";
  const size_t at = text.find(needle);
  CATCH_REQUIRE(at != std::string::npos);
  const size_t start = at + needle.size();
  const size_t end = text.find_first_of(",}", start);
  text.replace(start, end - start, value);
  return text;
}

}  // namespace

CATCH_TEST_CASE("ParseManifest bounds every shape field from above and below") {
  const struct {
    const char* key;
    const char* field;
    int too_big;
  } cases[] = {
      {"size", "image.size", 100000},
      {"patch_size", "image.patch_size", 65},
      {"num_image_tokens", "image.num_image_tokens", 16385},
      {"vocab_size", "text.vocab_size", (1 << 20) + 1},
      {"hidden_size", "text.hidden_size", 32769},
      {"num_layers", "text.num_layers", 129},
      {"num_heads", "text.num_heads", 257},
      {"num_kv_heads", "text.num_kv_heads", 257},
      {"head_dim", "text.head_dim", 1025},
      {"sliding_window", "text.sliding_window", (1 << 20) + 1},
      {"max_position_embeddings", "text.max_position_embeddings", (1 << 20) + 1},
  };
  for (const auto& c : cases) {
    CATCH_INFO(c.field);
    auto big = pg::model::ParseManifest(WithField(c.key, std::to_string(c.too_big)), "tiny.json");
    CATCH_REQUIRE_FALSE(big.ok());
    CATCH_CHECK(big.status().code() == absl::StatusCode::kInvalidArgument);
    CATCH_CHECK_THAT(std::string(big.status().message()),
                     Catch::Contains(std::string("'") + c.field + "' (" +
                                     std::to_string(c.too_big) + ") must be between"));
    auto low = pg::model::ParseManifest(WithField(c.key, "-1"), "tiny.json");
    CATCH_CHECK_FALSE(low.ok());
  }
  // The largest variant's shape (28B, 896 px) stays well inside.
  auto m = pg::model::ParseManifest(WithField("size", "896"), "tiny.json");
  CATCH_CHECK(m.ok());
  auto max = pg::model::ParseManifest(WithField("size", std::to_string(pg::model::kMaxImageSize)),
                                      "tiny.json");
  CATCH_CHECK(max.ok());
}
