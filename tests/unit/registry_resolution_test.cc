// Model ids and where the registry looks for them: bundle -> HF cache (complete only with
// refs/main) -> Hub.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "server/registry/allowed_models.h"
#include "server/registry/model_id.h"
#include "server/registry/resolver.h"

namespace fs = std::filesystem;
using namespace pg::registry;

CATCH_TEST_CASE("model ids are validated before they become paths") {
  for (const char* ok : {"tiny", "google/paligemma2-3b-mix-448", "a.b_c-d/E1"}) {
    CATCH_INFO(ok);
    CATCH_CHECK(ValidateModelId(ok).ok());
  }
  for (const char* bad : {"", "a/b/c", "../etc", "a/..", "/abs", "a/", ".hidden", "-x", "a--b",
                          "a b", "a\\b", "name?", "x/y%2f"}) {
    CATCH_INFO(bad);
    CATCH_CHECK(ValidateModelId(bad).code() == absl::StatusCode::kInvalidArgument);
  }
  CATCH_CHECK_FALSE(ValidateModelId(std::string(97, 'a')).ok());
  CATCH_CHECK(HfCacheFolderName("google/paligemma2-3b-mix-448") ==
              "models--google--paligemma2-3b-mix-448");
  CATCH_CHECK(HfCacheFolderName("tiny") == "models--tiny");
}

CATCH_TEST_CASE("resolution order: bundle, then complete HF cache folder, then the Hub") {
  const fs::path root = fs::temp_directory_path() / ("pg-resolve-" + std::to_string(::getpid()));
  fs::remove_all(root);
  const ModelsDir dir{root.string()};
  const std::string id = "org/model";

  CATCH_CHECK(Resolve(dir, id).kind == SourceKind::kHub);
  CATCH_CHECK(Resolve(dir, id).path == dir.HfRepoDir(id));

  // A snapshot without refs/main is an interrupted download: still the Hub (it resumes).
  const fs::path repo = dir.HfRepoDir(id);
  fs::create_directories(repo / "snapshots" / "abc");
  std::ofstream(repo / "snapshots" / "abc" / "config.json") << "{}";
  CATCH_CHECK(Resolve(dir, id).kind == SourceKind::kHub);
  fs::create_directories(repo / "refs");
  std::ofstream(repo / "refs" / "main") << "abc";
  CATCH_CHECK(Resolve(dir, id).kind == SourceKind::kHfCache);
  CATCH_CHECK(DescribeSource(Resolve(dir, id)) == "hf-cache");

  // A bundle wins; a ".partial" export next to it does not count.
  fs::create_directories(root / "bundles" / "org" / "model.partial");
  std::ofstream(root / "bundles" / "org" / "model.partial" / "manifest.json") << "{}";
  CATCH_CHECK(Resolve(dir, id).kind == SourceKind::kHfCache);
  fs::create_directories(root / "bundles" / "org" / "model");
  std::ofstream(root / "bundles" / "org" / "model" / "manifest.json") << "{}";
  const Resolution r = Resolve(dir, id);
  CATCH_CHECK(r.kind == SourceKind::kBundle);
  CATCH_CHECK(r.path == dir.BundleDir(id));
  CATCH_CHECK(FolderBytes(r.path) == 2);
  // What clients see names the kind only: no server path, no Hub URL.
  CATCH_CHECK(DescribeSource(r) == "bundle");
  CATCH_CHECK(DescribeSource(Resolution{SourceKind::kHub, ""}) == "hub");
  fs::remove_all(root);
}

CATCH_TEST_CASE("allowed model patterns are fnmatch globs over the whole id") {
  auto patterns = ParseAllowedModels(" google/paligemma2-* , acme/tiny-?,,org/[ab]x ");
  CATCH_REQUIRE(patterns.ok());
  CATCH_CHECK(patterns->size() == 3);
  for (const char* ok : {"google/paligemma2-3b-mix-448", "google/paligemma2-28b-pt-896",
                         "acme/tiny-1", "org/ax", "org/bx"}) {
    CATCH_INFO(ok);
    CATCH_CHECK(MatchesAllowedModels(*patterns, ok));
  }
  for (const char* refused : {"google/paligemma-3b-mix-448", "attacker/evil-model",
                              "xgoogle/paligemma2-3b", "acme/tiny-12", "org/cx", "tiny"}) {
    CATCH_INFO(refused);
    CATCH_CHECK_FALSE(MatchesAllowedModels(*patterns, refused));
  }
  // The default list is Google's PaliGemma 2 repos only.
  auto defaults = ParseAllowedModels(kDefaultAllowedModels);
  CATCH_REQUIRE(defaults.ok());
  CATCH_CHECK(MatchesAllowedModels(*defaults, "google/paligemma2-10b-mix-224"));
  CATCH_CHECK_FALSE(MatchesAllowedModels(*defaults, "attacker/paligemma2-3b"));
  // Empty: nothing from the Hub (the default model and local bundles still are, in the registry).
  auto none = ParseAllowedModels("");
  CATCH_REQUIRE(none.ok());
  CATCH_CHECK_FALSE(MatchesAllowedModels(*none, "google/paligemma2-3b-mix-448"));
  CATCH_CHECK(ParseAllowedModels("google/*\"").status().code() ==
              absl::StatusCode::kInvalidArgument);
  CATCH_CHECK(MatchesAllowedModels(*ParseAllowedModels("*"), "any/thing"));
}

CATCH_TEST_CASE("bundles with non-regular files are refused without opening them") {
  const fs::path root = fs::temp_directory_path() / ("pg-bundle-" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path bundle = root / "b";
  fs::create_directories(bundle / "sub");
  std::ofstream(bundle / "manifest.json") << "{}";
  std::ofstream(bundle / "sub" / "w.safetensors") << "x";
  std::ofstream(root / "outside.bin") << "x";
  CATCH_CHECK(CheckBundleFiles(bundle.string()).ok());
  // A link to a regular file inside the bundle is fine.
  fs::create_symlink("sub/w.safetensors", bundle / "link.safetensors");
  CATCH_CHECK(CheckBundleFiles(bundle.string()).ok());

  // A FIFO would block the loader's open() forever.
  CATCH_REQUIRE(::mkfifo((bundle / "vision.pt").c_str(), 0600) == 0);
  absl::Status fifo = CheckBundleFiles(bundle.string());
  CATCH_CHECK(fifo.code() == absl::StatusCode::kFailedPrecondition);
  CATCH_CHECK_THAT(std::string(fifo.message()), Catch::Contains("vision.pt"));
  CATCH_CHECK_THAT(std::string(fifo.message()), Catch::Contains("not a regular file"));
  // The message names the entry relative to the bundle; the folder is in the private detail only.
  CATCH_CHECK(std::string(fifo.message()).find(root.string()) == std::string::npos);
  fs::remove(bundle / "vision.pt");

  fs::create_symlink(root / "outside.bin", bundle / "out.pt");
  CATCH_CHECK_THAT(std::string(CheckBundleFiles(bundle.string()).message()),
                   Catch::Contains("out of the bundle"));
  fs::remove(bundle / "out.pt");
  CATCH_REQUIRE(::mkfifo((bundle / "sub" / "pipe").c_str(), 0600) == 0);
  fs::create_symlink("sub/pipe", bundle / "to-pipe.pt");
  CATCH_CHECK_FALSE(CheckBundleFiles(bundle.string()).ok());
  fs::remove_all(root);
}
