// A bundle module's weights file (<module>.safetensors, bundle format 2): the header parsed and
// checked against the file's size, and the file mapped so tensors can use its bytes in place.
// LibTorch-free, so the header checks are unit-tested and fuzzed without it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pg::model {

struct WeightEntry {
  std::string name;   // parameter path in the module, e.g. "layers.0.mlp.gate_proj.weight"
  std::string dtype;  // safetensors dtype: F32, BF16 or F16
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // from the start of the file
  uint64_t bytes = 0;
};

// Parses a safetensors header: `file_head` holds at least the first 8 + header-length bytes of a
// file of `file_size` bytes. Every tensor must lie inside the file, match its dtype and shape in
// size, and not overlap another; names must be unique.
absl::StatusOr<std::vector<WeightEntry>> ParseWeightsHeader(std::string_view file_head,
                                                            uint64_t file_size,
                                                            const std::string& display_name);

// A read-only view of a whole file through a shared mapping (the pages are the page cache's).
class MappedFile {
 public:
  static absl::StatusOr<std::shared_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  char* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  MappedFile() = default;
  char* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace pg::model
