// Loading a damaged bundle must give a clear error naming the problem, never a crash.
#include <torch/script.h>

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

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
  CATCH_SECTION("unknown dtype or device") {
    pg::model::LoadOptions options;
    options.dtype = "int3";
    CATCH_CHECK_THAT(LoadError(pg::testing::TinyBundle(), options), Catch::Contains("dtype"));
    options = {};
    options.device = "warp-drive";
    CATCH_CHECK_THAT(LoadError(pg::testing::TinyBundle(), options), Catch::Contains("device"));
  }
}
