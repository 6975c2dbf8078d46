// libFuzzer target: Tokenizer::FromJson on arbitrary (small) tokenizer.json text — a bundle's or an
// HF cache's tokenizer.json is read from disk, so a damaged one must be an error, not a crash. A
// tokenizer that loads is then used once (Encode + Decode of a fixed string).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<pg::text::Tokenizer> tok = pg::text::Tokenizer::FromJson(text);
  if (!tok.ok()) return 0;
  const std::vector<int32_t> ids = tok->Encode("segment <loc0001> left wheel\n\xff");
  (void)tok->Decode(ids, false);
  (void)tok->Decode({-1, 0, 1, 2, 1 << 30}, true);
  return 0;
}
