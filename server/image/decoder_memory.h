// What stb_image allocates, counted per thread: the decode budget (decode_budget.h) reserves a
// decode's peak bytes before it starts, and the tests check that estimate against these counts.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pg::image {

struct DecoderMemory {
  int64_t current = 0;  // bytes stb holds now on this thread
  int64_t peak = 0;     // the most it held at once since ResetDecoderPeak()
};

DecoderMemory ThreadDecoderMemory();
void ResetDecoderPeak();

// stb_image's STBI_MALLOC / STBI_REALLOC / STBI_FREE (stb.cc).
void* DecoderMalloc(size_t size);
void* DecoderRealloc(void* p, size_t size);
void DecoderFree(void* p);

}  // namespace pg::image
