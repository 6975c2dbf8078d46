// manifest.json of an exported bundle (docs/bundle-format.md), parsed into plain C++ types.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pg::model {

// Bundle formats this server loads. 1: weights inside the TorchScript archives; 2: in
// <module>.safetensors beside them; 3: as 2, with linear layers calling pg::linear
// (server/model/small_linear.h).
inline constexpr int kMinFormatVersion = 1;
inline constexpr int kMaxFormatVersion = 3;

// The largest image.size a bundle may declare (twice the 896 px variant); the rest of the shape
// bounds are in ParseManifest's one table.
inline constexpr int kMaxImageSize = 1792;

struct BundleFile {
  std::string sha256;
  int64_t bytes = 0;
};

struct Manifest {
  int format_version = 0;
  std::string exporter_version;
  std::string model_id;
  std::string revision;
  std::string dtype;  // dtype the modules were saved in

  // Image preprocessing.
  int image_size = 0;
  int patch_size = 0;
  int num_image_tokens = 0;
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
  float rescale_factor = 1.0f / 255.0f;
  std::string resample;

  // Language model shape (for allocating the KV cache).
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int sliding_window = 0;
  int max_position_embeddings = 0;

  // Special token ids.
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t pad_id = -1;
  int32_t image_id = -1;
  int32_t newline_id = -1;
  int32_t loc0_id = -1;
  int32_t seg0_id = -1;

  std::map<std::string, BundleFile> files;
};

// Reads and validates DIR/manifest.json. Missing fields or impossible values are errors naming the
// field.
absl::StatusOr<Manifest> LoadManifest(const std::string& bundle_dir);

// The parsing and validation half of LoadManifest, on the file's text (`source` names it in
// errors). Never throws: any text is a Manifest or InvalidArgument (fuzzed by
// tests/fuzz/fuzz_manifest.cc).
absl::StatusOr<Manifest> ParseManifest(std::string_view json_text, const std::string& source);

}  // namespace pg::model
