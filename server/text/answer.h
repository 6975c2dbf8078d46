// The answer grammar of PaliGemma's detection/segmentation outputs (big_vision):
//   per object: 4 <locNNNN> (y1, x1, y2, x2 in 1/1024ths), optionally 16 <segNNN> codebook indices,
//   a label; objects separated by ";".
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pg::text {

struct DetectedObject {
  std::array<int, 4> loc{};  // y1, x1, y2, x2, each in [0, 1023]
  std::optional<std::array<int, 16>>
      seg;            // VAE codebook indices in [0, 127], if the answer had them
  std::string label;  // trimmed; may be empty
};

// Parses the decoded answer (special tokens such as <eos> may be present and are ignored). Never
// fails: malformed pieces are skipped, an object without (valid) seg tokens keeps its box with seg
// = nullopt, so boxes and masks never drift apart.
std::vector<DetectedObject> ParseAnswer(std::string_view answer);

}  // namespace pg::text
