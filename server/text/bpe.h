// The BPE model of a `tokenizers` tokenizer.json ("model": {"type": "BPE", ...}), merging one word
// the way tokenizers' Word::merge_all does: a min-heap of candidate merges ordered by (rank,
// position) over a doubly linked list of symbols, so a word of n characters costs O(n log n), not
// O(n^2).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace pg::text {

// Debian's Abseil is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW == 0),
// so std::string_view must be converted before it reaches StrCat or a heterogeneous hash-map
// lookup.
inline absl::string_view AsAbsl(std::string_view s) { return {s.data(), s.size()}; }

class BpeModel {
 public:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };

  // Token string -> id of the model vocabulary (added tokens are not in here unless the file puts
  // them).
  absl::flat_hash_map<std::string, int32_t> vocab;
  // (left id << 32 | right id) -> rank and id of the merged token.
  absl::flat_hash_map<uint64_t, Merge> merges;
  std::optional<int32_t> unk_id;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  // Id of "<0xNN>" for each byte, -1 when the vocabulary lacks it.
  int32_t byte_ids[256];

  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  // Fills byte_ids from vocab; call after vocab is complete.
  void IndexByteTokens();

  // Appends the ids of one pre-tokenized, normalised word (valid UTF-8) to *out.
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;
};

}  // namespace pg::text
