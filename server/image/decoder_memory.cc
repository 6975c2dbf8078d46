#include "server/image/decoder_memory.h"

#include <cstdlib>
#include <cstring>

namespace pg::image {
namespace {

// Each block starts with its size; 16 bytes keep the caller's pointer as aligned as malloc's.
constexpr size_t kHeader = 16;

thread_local DecoderMemory tls_memory;

void Add(int64_t delta) {
  tls_memory.current += delta;
  if (tls_memory.current > tls_memory.peak) tls_memory.peak = tls_memory.current;
}

}  // namespace

DecoderMemory ThreadDecoderMemory() { return tls_memory; }

void ResetDecoderPeak() { tls_memory.peak = tls_memory.current; }

void* DecoderMalloc(size_t size) {
  auto* block = static_cast<unsigned char*>(std::malloc(size + kHeader));
  if (block == nullptr) return nullptr;
  std::memcpy(block, &size, sizeof(size));
  Add(static_cast<int64_t>(size));
  return block + kHeader;
}

void* DecoderRealloc(void* p, size_t size) {
  if (p == nullptr) return DecoderMalloc(size);
  auto* old_block = static_cast<unsigned char*>(p) - kHeader;
  size_t old_size;
  std::memcpy(&old_size, old_block, sizeof(old_size));
  auto* block = static_cast<unsigned char*>(std::realloc(old_block, size + kHeader));
  if (block == nullptr) return nullptr;
  std::memcpy(block, &size, sizeof(size));
  // realloc may briefly hold both blocks; counted as the new size on top of the old one.
  Add(static_cast<int64_t>(size));
  Add(-static_cast<int64_t>(old_size));
  return block + kHeader;
}

void DecoderFree(void* p) {
  if (p == nullptr) return;
  auto* block = static_cast<unsigned char*>(p) - kHeader;
  size_t size;
  std::memcpy(&size, block, sizeof(size));
  Add(-static_cast<int64_t>(size));
  std::free(block);
}

}  // namespace pg::image
