#include "server/model/manifest.h"

#include <climits>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace pg::model {
namespace {

using nlohmann::json;

// Walks a dotted path ("image.size") so error messages can name the exact missing field.
absl::StatusOr<const json*> Find(const json& root, const std::string& path) {
  const json* node = &root;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string key =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(key)) {
      return absl::InvalidArgumentError(absl::StrCat("manifest.json: missing field '", path, "'"));
    }
    node = &(*node)[key];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return node;
}

absl::Status WrongType(const std::string& path) {
  return absl::InvalidArgumentError(
      absl::StrCat("manifest.json: field '", path, "' has the wrong type"));
}

// Checked conversions: nlohmann's get<int>() / get<float>() static_cast whatever number is there,
// so 4294967297 silently became 1 and 1e30 was undefined behaviour (found by
// tests/fuzz/fuzz_manifest).
absl::Status Convert(const json& node, const std::string& path, std::string* out) {
  if (!node.is_string()) return WrongType(path);
  *out = node.get<std::string>();
  return absl::OkStatus();
}

absl::Status Convert(const json& node, const std::string& path, int* out) {
  if (!node.is_number_integer()) return WrongType(path);  // also true for number_unsigned
  if (node.is_number_unsigned() ? node.get<uint64_t>() > uint64_t{INT_MAX}
                                : node.get<int64_t>() < INT_MIN || node.get<int64_t>() > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest.json: field '", path, "' is out of range"));
  }
  *out = static_cast<int>(node.get<int64_t>());
  return absl::OkStatus();
}

absl::Status Convert(const json& node, const std::string& path, float* out) {
  if (!node.is_number()) return WrongType(path);
  const double v = node.get<double>();
  if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest.json: field '", path, "' is out of range"));
  }
  *out = static_cast<float>(v);
  return absl::OkStatus();
}

absl::Status Convert(const json& node, const std::string& path, std::array<float, 3>* out) {
  if (!node.is_array() || node.size() != 3) return WrongType(path);
  for (size_t i = 0; i < 3; ++i) RETURN_IF_ERROR(Convert(node[i], path, &(*out)[i]));
  return absl::OkStatus();
}

template <typename T>
absl::Status Read(const json& root, const std::string& path, T* out) {
  auto node = Find(root, path);
  if (!node.ok()) return node.status();
  return Convert(**node, path, out);
}

}  // namespace

absl::StatusOr<Manifest> LoadManifest(const std::string& bundle_dir) {
  const std::string path = bundle_dir + "/manifest.json";
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("bundle has no manifest: ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseManifest(buffer.str(), path);
}

absl::StatusOr<Manifest> ParseManifest(std::string_view json_text, const std::string& source) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("manifest is not valid JSON: ", source));
  }

  Manifest m;
  absl::Status s;
  auto read = [&](const std::string& field, auto* out) {
    if (s.ok()) s = Read(root, field, out);
  };
  read("format_version", &m.format_version);
  read("exporter_version", &m.exporter_version);
  read("dtype", &m.dtype);
  read("image.size", &m.image_size);
  read("image.patch_size", &m.patch_size);
  read("image.num_image_tokens", &m.num_image_tokens);
  read("image.mean", &m.mean);
  read("image.std", &m.std);
  read("image.rescale_factor", &m.rescale_factor);
  read("image.resample", &m.resample);
  read("text.vocab_size", &m.vocab_size);
  read("text.hidden_size", &m.hidden_size);
  read("text.num_layers", &m.num_layers);
  read("text.num_heads", &m.num_heads);
  read("text.num_kv_heads", &m.num_kv_heads);
  read("text.head_dim", &m.head_dim);
  read("text.sliding_window", &m.sliding_window);
  read("text.max_position_embeddings", &m.max_position_embeddings);
  read("tokens.bos", &m.bos_id);
  read("tokens.eos", &m.eos_id);
  read("tokens.pad", &m.pad_id);
  read("tokens.image", &m.image_id);
  read("tokens.newline", &m.newline_id);
  read("tokens.loc0", &m.loc0_id);
  read("tokens.seg0", &m.seg0_id);
  if (!s.ok()) return s;

  // Provenance is informative only; an exporter run on a bare folder may not know it.
  if (auto src = root.find("source"); src != root.end() && src->is_object()) {
    if (auto id = src->find("model_id"); id != src->end() && id->is_string()) m.model_id = *id;
    if (auto rev = src->find("revision"); rev != src->end() && rev->is_string()) m.revision = *rev;
  }
  if (auto files = root.find("files"); files != root.end() && files->is_object()) {
    for (auto& [name, entry] : files->items()) {
      // entry.value("sha256", "") threw (std::terminate) for a non-string; a damaged bundle must be
      // an error instead (found by tests/fuzz/fuzz_manifest).
      BundleFile f;
      if (entry.is_object()) {
        const auto sha = entry.find("sha256");
        const auto bytes = entry.find("bytes");
        if ((sha != entry.end() && !sha->is_string()) ||
            (bytes != entry.end() && !bytes->is_number_integer())) {
          return absl::InvalidArgumentError(
              absl::StrCat("manifest.json: files entry '", name, "' has the wrong type"));
        }
        if (sha != entry.end()) f.sha256 = sha->get<std::string>();
        if (bytes != entry.end()) f.bytes = bytes->get<int64_t>();
      }
      m.files[name] = f;
    }
  }

  if (m.format_version < kMinFormatVersion || m.format_version > kMaxFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest.json: unsupported format_version ", m.format_version,
                     " (this server loads ", kMinFormatVersion, " to ", kMaxFormatVersion, ")"));
  }
  // The one table of shape bounds. Lower bounds: the loader sizes tensors and the KV cache from
  // these. Upper bounds: comfortably above the largest PaliGemma 2 (28B, 896 px: image 896, 4096
  // image tokens, 46 layers, hidden 4608, vocab 257216), so a damaged or hostile bundle fails here
  // with the field's name instead of loading as ready and failing (or allocating gigabytes) at the
  // first request.
  struct Bound {
    const char* name;
    int value, min, max;
  };
  for (const Bound& b :
       {Bound{"image.size", m.image_size, 1, kMaxImageSize},
        Bound{"image.patch_size", m.patch_size, 1, 64},
        Bound{"image.num_image_tokens", m.num_image_tokens, 1, 16384},
        Bound{"text.vocab_size", m.vocab_size, 1, 1 << 20},
        Bound{"text.hidden_size", m.hidden_size, 1, 32768},
        Bound{"text.num_layers", m.num_layers, 1, 128},
        Bound{"text.num_heads", m.num_heads, 1, 256},
        Bound{"text.num_kv_heads", m.num_kv_heads, 1, 256},
        Bound{"text.head_dim", m.head_dim, 1, 1024},
        Bound{"text.sliding_window", m.sliding_window, 0, 1 << 20},
        Bound{"text.max_position_embeddings", m.max_position_embeddings, 1, 1 << 20}}) {
    if (b.value < b.min || b.value > b.max) {
      return absl::InvalidArgumentError(absl::StrCat("manifest.json: field '", b.name, "' (",
                                                     b.value, ") must be between ", b.min, " and ",
                                                     b.max));
    }
  }
  if (m.patch_size > m.image_size) {
    return absl::InvalidArgumentError(
        "manifest.json: field 'image.patch_size' is larger than 'image.size'");
  }
  for (int i = 0; i < 3; ++i) {
    if (!(m.std[i] > 0)) {
      return absl::InvalidArgumentError("manifest.json: field 'image.std' must be positive");
    }
  }
  // Token ids index the embedding table: one outside [0, vocab_size) is a broken bundle.
  for (auto [name, value] : {std::pair<const char*, int32_t>{"tokens.bos", m.bos_id},
                             {"tokens.eos", m.eos_id},
                             {"tokens.pad", m.pad_id},
                             {"tokens.image", m.image_id},
                             {"tokens.newline", m.newline_id},
                             {"tokens.loc0", m.loc0_id},
                             {"tokens.seg0", m.seg0_id}}) {
    if (value < 0 || value >= m.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("manifest.json: field '", name, "' (", value,
                                                     ") is not a token id below text.vocab_size (",
                                                     m.vocab_size, ")"));
    }
  }
  return m;
}

}  // namespace pg::model
