#include "server/model/weights_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"

namespace pg::model {
namespace {

using nlohmann::json;

// Header JSON larger than this is not a weights file we wrote (the 3B model's is ~100 KB).
constexpr uint64_t kMaxHeaderBytes = 64ull << 20;

int64_t ElementSize(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "BF16" || dtype == "F16") return 2;
  return 0;
}

}  // namespace

absl::StatusOr<std::vector<WeightEntry>> ParseWeightsHeader(std::string_view file_head,
                                                            uint64_t file_size,
                                                            const std::string& display_name) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(display_name, ": ", why));
  };
  if (file_size < 8 || file_head.size() < 8) return bad("shorter than a safetensors header");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<unsigned char>(file_head[i]);
  }
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8) {
    return bad(absl::StrCat("header length ", header_len, " does not fit the file (", file_size,
                            " bytes)"));
  }
  if (file_head.size() < 8 + header_len) return bad("header cut short");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  json root = json::parse(file_head.begin() + 8, file_head.begin() + 8 + header_len, nullptr,
                          /*allow_exceptions=*/false);
  if (!root.is_object()) return bad("header is not a JSON object");

  std::vector<WeightEntry> entries;
  for (auto& [name, v] : root.items()) {
    if (name == "__metadata__") continue;
    if (name.empty()) return bad("a tensor has an empty name");
    if (!v.is_object()) return bad(absl::StrCat("tensor '", name, "' is not an object"));
    WeightEntry e;
    e.name = name;
    const auto dtype = v.find("dtype");
    const auto shape = v.find("shape");
    const auto offsets = v.find("data_offsets");
    if (dtype == v.end() || !dtype->is_string() || shape == v.end() || !shape->is_array() ||
        offsets == v.end() || !offsets->is_array() || offsets->size() != 2) {
      return bad(absl::StrCat("tensor '", name, "' lacks dtype, shape or data_offsets"));
    }
    e.dtype = dtype->get<std::string>();
    const int64_t elem = ElementSize(e.dtype);
    if (elem == 0) {
      return bad(
          absl::StrCat("tensor '", name, "' has dtype ", e.dtype, " (expected F32, BF16, F16)"));
    }
    // Each dimension and the running product stay far below 2^64.
    uint64_t numel = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40)) {
        return bad(absl::StrCat("tensor '", name, "' has a bad shape"));
      }
      const uint64_t n = d.get<uint64_t>();
      if (n != 0 && numel > (1ull << 62) / n)
        return bad(absl::StrCat("tensor '", name, "' is too big"));
      numel *= n;
      e.shape.push_back(static_cast<int64_t>(n));
    }
    const auto& b = (*offsets)[0];
    const auto& end = (*offsets)[1];
    if (!b.is_number_unsigned() || !end.is_number_unsigned() ||
        b.get<uint64_t>() > end.get<uint64_t>() || end.get<uint64_t>() > data_size) {
      return bad(absl::StrCat("tensor '", name, "' lies outside the file (", data_size,
                              " data bytes): truncated?"));
    }
    e.offset = data_start + b.get<uint64_t>();
    e.bytes = end.get<uint64_t>() - b.get<uint64_t>();
    if (numel > std::numeric_limits<uint64_t>::max() / elem || e.bytes != numel * elem) {
      return bad(
          absl::StrCat("tensor '", name, "' has ", e.bytes, " bytes for its shape and dtype"));
    }
    entries.push_back(std::move(e));
  }
  std::vector<const WeightEntry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const WeightEntry* a, const WeightEntry* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto* prev = by_offset[i - 1];
    if (prev->offset + prev->bytes > by_offset[i]->offset) {
      return bad(absl::StrCat("tensors '", prev->name, "' and '", by_offset[i]->name, "' overlap"));
    }
  }
  return entries;
}

absl::StatusOr<std::shared_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ > 0) {
    // Read-only and shared: the tensors are the page cache's pages (inference never writes a
    // weight; a write would fault loudly instead of silently copying). MAP_POPULATE maps them now,
    // so a load reads the file once and the first request does not pay for it. (A private writable
    // mapping populated 50x slower on the sandboxed test machine: 6.7 s vs 0.13 s for 4.3 GB.)
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return absl::ResourceExhaustedError(absl::StrCat("cannot map ", path, ": ", strerror(err)));
    }
    f->data_ = static_cast<char*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) munmap(data_, size_);
}

}  // namespace pg::model
