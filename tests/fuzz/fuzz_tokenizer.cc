// libFuzzer target: the Gemma tokenizer of the tiny fixture (tokenizer.json, 12.6 MB, loaded once
// in LLVMFuzzerInitialize). The first byte picks the operation:
//   even: Encode / EncodePrompt of the remaining bytes (arbitrary, often invalid UTF-8), then
//   Decode of
//         the ids it produced (ids from Encode must all be valid);
//   odd:  Decode of the remaining bytes read as little-endian int32 ids (negative and out-of-range
//   ids
//         included), with and without skip_special_tokens, plus IdToToken / IsSpecial on each.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/text/tokenizer.h"

namespace {
std::optional<pg::text::Tokenizer>* g_tokenizer = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const char* env = std::getenv("PG_FUZZ_TOKENIZER");
  const std::string path = env != nullptr ? env : PG_FIXTURES_DIR "/paligemma2-tiny/tokenizer.json";
  auto tokenizer = pg::text::Tokenizer::FromFile(path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path.c_str(),
                 std::string(tokenizer.status().message()).c_str());
    std::abort();
  }
  g_tokenizer = new std::optional<pg::text::Tokenizer>(std::move(*tokenizer));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const pg::text::Tokenizer& tok = **g_tokenizer;
  const int32_t vocab = tok.vocab_size();
  if (data[0] % 2 == 0) {
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::vector<int32_t> ids = tok.Encode(text);
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab) __builtin_trap();
    }
    (void)tok.Decode(ids, /*skip_special_tokens=*/false);
    (void)tok.Decode(ids, /*skip_special_tokens=*/true);
    const std::vector<int32_t> prompt = pg::text::EncodePrompt(tok, text);
    for (int32_t id : prompt) {
      if (id < 0 || id >= vocab) __builtin_trap();
    }
    (void)tok.TokenToId(text);
  } else {
    std::vector<int32_t> ids((size - 1) / 4);
    if (!ids.empty()) std::memcpy(ids.data(), data + 1, ids.size() * 4);
    (void)tok.Decode(ids, /*skip_special_tokens=*/false);
    (void)tok.Decode(ids, /*skip_special_tokens=*/true);
    for (int32_t id : ids) {
      (void)tok.IdToToken(id);
      (void)tok.IsSpecial(id);
    }
  }
  return 0;
}
