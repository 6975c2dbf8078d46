// Reads tokenizer.json with a SAX pass: the two bulk members (model.vocab, 256 K entries, and
// model.merges, 580 K entries) are streamed into flat vectors instead of a DOM, which halves load
// time; everything else (normalizer, decoder, added_tokens, the model's flags) is kept as a small
// DOM.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace pg::text {

struct TokenizerJson {
  nlohmann::json rest;  // the document without model.vocab / model.merges when those were streamed
  bool has_vocab = false;   // model.vocab was an object
  bool has_merges = false;  // model.merges was an array
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
};

// InvalidArgument for text that is not JSON, a vocab id that is not an integer, or a merge that is
// neither "a b" nor ["a", "b"].
absl::StatusOr<TokenizerJson> ReadTokenizerJson(std::string_view text);

}  // namespace pg::text
