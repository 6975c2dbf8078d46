// libFuzzer target: ParseAnswer on arbitrary text. It "never fails": every object it returns must
// hold in-range loc (0..1023) and seg (0..127) values, since the engine indexes the VAE codebook
// with them.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/text/answer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const pg::text::DetectedObject& obj : pg::text::ParseAnswer(text)) {
    for (int v : obj.loc) {
      if (v < 0 || v > 1023) __builtin_trap();
    }
    if (obj.seg) {
      for (int v : *obj.seg) {
        if (v < 0 || v > 127) __builtin_trap();
      }
    }
    if (obj.label.size() > size) __builtin_trap();
  }
  return 0;
}
