// libFuzzer target: the bundle's manifest.json reader (ParseManifest, the text half of
// LoadManifest). Any text must give a Manifest or an error status; a Manifest that parses must
// satisfy the checks LoadManifest promises (a supported format_version, shapes within bounds),
// since the model loader sizes tensors and the KV cache from them.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/model/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<pg::model::Manifest> m = pg::model::ParseManifest(text, "fuzz/manifest.json");
  if (!m.ok()) return 0;
  if (m->format_version < pg::model::kMinFormatVersion ||
      m->format_version > pg::model::kMaxFormatVersion || m->image_size <= 0 ||
      m->patch_size <= 0 || m->num_image_tokens <= 0 || m->vocab_size <= 0 || m->num_layers <= 0 ||
      m->head_dim <= 0 || m->image_size > pg::model::kMaxImageSize ||
      m->patch_size > m->image_size || m->num_layers > 128) {
    __builtin_trap();
  }
  return 0;
}
