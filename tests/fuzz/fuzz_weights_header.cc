// libFuzzer target: the header reader of a bundle's <module>.safetensors (ParseWeightsHeader). Any
// bytes must give entries or an error status; entries that parse must lie inside the file and not
// overlap, since the engine makes tensors that view the mapped file at those offsets.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "server/model/weights_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file(reinterpret_cast<const char*>(data), size);
  auto entries = pg::model::ParseWeightsHeader(file, file.size(), "fuzz.safetensors");
  if (!entries.ok()) return 0;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& e : *entries) {
    if (e.offset > file.size() || e.bytes > file.size() - e.offset) __builtin_trap();
    spans.emplace_back(e.offset, e.offset + e.bytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i - 1].second > spans[i].first) __builtin_trap();
  }
  return 0;
}
