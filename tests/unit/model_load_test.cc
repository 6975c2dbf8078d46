// Loading a damaged bundle must give a clear error naming the problem, never a crash.
#include <torch/script.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "server/model/paligemma.h"
#include "tests/unit/test_support.h"

namespace fs = std::filesystem;
using pg::model::PaliGemma;

namespace {

// A private copy of the tiny bundle that a test may damage.
struct BundleCopy {
  fs::path dir;
  explicit BundleCopy(const std::string& name) {
    dir = fs::temp_directory_path() / ("pg-bundle-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::copy(pg::testing::TinyBundle(), dir, fs::copy_options::recursive);
  }
  ~BundleCopy() { fs::remove_all(dir); }
  void Write(const std::string& file, const std::string& content) const {
    std::ofstream(dir / file, std::ios::binary | std::ios::trunc) << content;
  }
};

std::string LoadError(const fs::path& dir, pg::model::LoadOptions options = {}) {
  auto model = PaliGemma::Load(dir.string(), options);
  return model.ok() ? "" : std::string(model.status().message());
}

}  // namespace

CATCH_TEST_CASE("the tiny bundle loads and reports its manifest", "[load]") {
  auto model = PaliGemma::Load(pg::testing::TinyBundle());
  CATCH_REQUIRE(model.ok());
  const auto& m = (*model)->manifest();
  CATCH_CHECK(m.image_size == 56);
  CATCH_CHECK(m.num_image_tokens == 16);
  CATCH_CHECK(m.hidden_size == 32);
  CATCH_CHECK(m.num_layers == 2);
  CATCH_CHECK(m.num_kv_heads == 2);
  CATCH_CHECK(m.head_dim == 16);
  CATCH_CHECK(m.image_id == 257152);
  CATCH_CHECK(m.eos_id == 1);
  CATCH_CHECK(m.bos_id == 2);
}

CATCH_TEST_CASE("the bundle loads in bfloat16 too", "[load]") {
  pg::model::LoadOptions options;
  options.dtype = "bfloat16";
  auto model = PaliGemma::Load(pg::testing::TinyBundle(), options);
  CATCH_REQUIRE(model.ok());
  CATCH_CHECK((*model)->dtype() == torch::kBFloat16);
}

CATCH_TEST_CASE("weights are used from the mapped file unless the load converts them", "[load]") {
  // The tiny bundle is bfloat16 with a float32 VAE (docs/bundle-format.md).
  pg::model::LoadOptions same;
  same.dtype = "bfloat16";
  auto mapped = pg::model::PaliGemma::Load(pg::testing::TinyBundle(), same);
  CATCH_REQUIRE(mapped.ok());
  CATCH_CHECK((*mapped)->load_timings().copied_bytes == 0);
  CATCH_CHECK((*mapped)->load_timings().mapped_bytes == (*mapped)->parameter_bytes());

  auto converted = pg::model::PaliGemma::Load(pg::testing::TinyBundle());  // float32
  CATCH_REQUIRE(converted.ok());
  const auto& t = (*converted)->load_timings();
  // Vision and language are converted once (their float32 bytes); the float32 VAE stays mapped.
  CATCH_CHECK(t.copied_bytes > 0);
  CATCH_CHECK(t.mapped_bytes > 0);
  CATCH_CHECK(t.copied_bytes + t.mapped_bytes == (*converted)->parameter_bytes());
}

CATCH_TEST_CASE("damaged bundles are reported precisely", "[load][errors]") {
  CATCH_SECTION("missing folder") {
    CATCH_CHECK_THAT(LoadError("/nonexistent/bundle"), Catch::Contains("manifest"));
  }
  CATCH_SECTION("manifest is not JSON") {
    BundleCopy b("notjson");
    b.Write("manifest.json", "{ this is not json");
    CATCH_CHECK_THAT(LoadError(b.dir), Catch::Contains("not valid JSON"));
  }
  CATCH_SECTION("manifest misses a field") {
    BundleCopy b("nofield");
    auto m = pg::testing::ReadJson((b.dir / "manifest.json").string());
    m["text"].erase("head_dim");
    b.Write("manifest.json", m.dump());
    CATCH_CHECK_THAT(LoadError(b.dir), Catch::Contains("text.head_dim"));
  }
  CATCH_SECTION("module file missing") {
    BundleCopy b("nofile");
    fs::remove(b.dir / "language.pt");
    CATCH_CHECK_THAT(LoadError(b.dir), Catch::Contains("language.pt"));
  }
  CATCH_SECTION("module file truncated") {
    BundleCopy b("truncated");
    auto bytes = pg::testing::ReadFile((b.dir / "vision.pt").string());
    b.Write("vision.pt", bytes.substr(0, bytes.size() / 2));
    CATCH_CHECK_THAT(LoadError(b.dir), Catch::Contains("vision.pt"));
  }
  CATCH_SECTION("module file is garbage") {
    BundleCopy b("garbage");
    b.Write("vae.pt", "definitely not a torchscript archive");
    CATCH_CHECK_THAT(LoadError(b.dir), Catch::Contains("vae.pt"));
  }
  CATCH_SECTION("weights file missing") {
    BundleCopy b("noweights");
    fs::remove(b.dir / "vision.safetensors");
    CATCH_CHECK_THAT(LoadError(b.dir), Catch::Contains("vision.safetensors"));
  }
  CATCH_SECTION("weights file truncated") {
    BundleCopy b("truncweights");
    auto bytes = pg::testing::ReadFile((b.dir / "language.safetensors").string());
    b.Write("language.safetensors", bytes.substr(0, bytes.size() - 1000));
    const std::string error = LoadError(b.dir);
    CATCH_CHECK_THAT(error, Catch::Contains("language.safetensors"));
    CATCH_CHECK_THAT(error, Catch::Contains("truncated"));
  }
  CATCH_SECTION("weights file lacks a tensor or has one of the wrong shape") {
    // Rewrites the header in place (same length, spaces pad it): renames one tensor, or changes a
    // shape.
    auto rewrite = [](BundleCopy& b, const std::string& from, const std::string& to) {
      auto bytes = pg::testing::ReadFile((b.dir / "vae.safetensors").string());
      const size_t at = bytes.find(from);
      CATCH_REQUIRE(at != std::string::npos);
      CATCH_REQUIRE(to.size() == from.size());
      bytes.replace(at, from.size(), to);
      b.Write("vae.safetensors", bytes);
    };
    BundleCopy renamed("renamed");
    rewrite(renamed, "\"embedding\"", "\"embeddinX\"");
    CATCH_CHECK_THAT(LoadError(renamed.dir),
                     Catch::Contains("vae.safetensors lacks tensor embedding"));
    BundleCopy reshaped("reshaped");
    rewrite(reshaped, "\"shape\":[128,512]", "\"shape\":[512,128]");
    CATCH_CHECK_THAT(LoadError(reshaped.dir),
                     Catch::Contains("tensor embedding is F32 [512, 128], the "
                                     "module expects Float [128, 512]"));
  }
  CATCH_SECTION("unknown dtype or device") {
    pg::model::LoadOptions options;
    options.dtype = "int3";
    CATCH_CHECK_THAT(LoadError(pg::testing::TinyBundle(), options), Catch::Contains("dtype"));
    options = {};
    options.device = "warp-drive";
    CATCH_CHECK_THAT(LoadError(pg::testing::TinyBundle(), options), Catch::Contains("device"));
  }
}
