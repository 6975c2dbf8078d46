// The Gemma BPE tokenizer, read from a Hugging Face tokenizer.json (we cannot use sentencepiece:
// Debian's bundles an old protobuf that crashes next to gRPC). Encode/Decode match the `tokenizers`
// library.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pg::text {

class Tokenizer {
 public:
  static absl::StatusOr<Tokenizer> FromFile(const std::string& path);
  static absl::StatusOr<Tokenizer> FromJson(std::string_view json);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // tokenizers' encode(text, add_special_tokens=False): added tokens (<image>, <loc0123>, <seg045>,
  // <bos>…) are matched first, the rest is normalised (' ' -> '▁') and BPE-merged with byte
  // fallback.
  std::vector<int32_t> Encode(std::string_view text) const;

  // tokenizers' decode(ids, skip_special_tokens). Out-of-range ids are skipped.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Empty string for an out-of-range id.
  std::string IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  int32_t vocab_size() const;  // largest id + 1, added tokens included

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// PaliGemma's text prefix: tokens of "<bos>" + prompt + "\n", encoded as ONE string exactly as
// PaliGemmaProcessor does (so a prompt ending in "\n" merges into "\n\n"). Image tokens are not
// included.
std::vector<int32_t> EncodePrompt(const Tokenizer& tokenizer, std::string_view prompt);

}  // namespace pg::text
