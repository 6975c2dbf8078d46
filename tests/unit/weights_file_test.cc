// ParseWeightsHeader (LibTorch-free): the exported tiny bundle's weights files parse, and damaged
// headers are InvalidArgument errors naming the file and the tensor, never a crash or an
// out-of-file tensor.
#include "server/model/weights_file.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

#include "tests/unit/test_support.h"

namespace {

// A safetensors file: 8-byte little-endian header length, the header, then `data_bytes` zero bytes.
std::string File(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

std::string Error(const std::string& file) {
  auto r = pg::model::ParseWeightsHeader(file, file.size(), "w.safetensors");
  CATCH_REQUIRE_FALSE(r.ok());
  CATCH_CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

}  // namespace

CATCH_TEST_CASE("the tiny bundle's weights files parse and lie inside their files") {
  for (const char* name : {"vision", "language", "vae"}) {
    const std::string path = pg::testing::TinyBundle() + "/" + name + ".safetensors";
    const std::string bytes = pg::testing::ReadFile(path);
    auto entries = pg::model::ParseWeightsHeader(bytes, bytes.size(), path);
    CATCH_REQUIRE(entries.ok());
    CATCH_CHECK(!entries->empty());
    uint64_t first = bytes.size();
    for (const auto& e : *entries) {
      CATCH_CHECK(e.offset + e.bytes <= bytes.size());
      first = std::min(first, e.offset);
    }
    CATCH_CHECK(first % 64 == 0);  // the exporter starts the data on a 64-byte boundary
  }
}

CATCH_TEST_CASE("damaged weights headers are errors naming the problem") {
  const std::string ok = R"({"a.w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  auto good = pg::model::ParseWeightsHeader(File(ok, 24), 8 + ok.size() + 24, "w");
  CATCH_REQUIRE(good.ok());
  CATCH_CHECK((*good)[0].shape == std::vector<int64_t>{2, 3});
  CATCH_CHECK((*good)[0].offset == 8 + ok.size());

  CATCH_CHECK_THAT(Error("abc"), Catch::Contains("shorter than a safetensors header"));
  CATCH_CHECK_THAT(Error(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}"),
                   Catch::Contains("does not fit the file"));
  CATCH_CHECK_THAT(Error(File("[1,2]", 0)), Catch::Contains("not a JSON object"));
  CATCH_CHECK_THAT(Error(File("{not json", 0)), Catch::Contains("not a JSON object"));
  CATCH_CHECK_THAT(Error(File(ok, 23)), Catch::Contains("tensor 'a.w' lies outside the file"));
  CATCH_CHECK_THAT(Error(File(R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8)),
                   Catch::Contains("dtype I64"));
  CATCH_CHECK_THAT(Error(File(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
                   Catch::Contains("has 8 bytes for its shape"));
  CATCH_CHECK_THAT(Error(File(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
                   Catch::Contains("bad shape"));
  CATCH_CHECK_THAT(
      Error(File(
          R"({"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})",
          4)),
      Catch::Contains("too big"));
  CATCH_CHECK_THAT(Error(File(R"({"a":{"dtype":"F32","shape":[1]}})", 4)),
                   Catch::Contains("lacks dtype, shape or data_offsets"));
  CATCH_CHECK_THAT(Error(File(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              12)),
                   Catch::Contains("overlap"));
  CATCH_CHECK_THAT(Error(File(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8)),
                   Catch::Contains("outside the file"));
}
