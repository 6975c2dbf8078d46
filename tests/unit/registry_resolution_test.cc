// Model ids and where the registry looks for them: bundle -> HF cache (complete only with
// refs/main) -> Hub.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

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
  CATCH_CHECK(DescribeSource(Resolve(dir, id), "https://hub", id).rfind("hf-cache:", 0) == 0);

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
  CATCH_CHECK(DescribeSource(Resolution{SourceKind::kHub, ""}, "https://hub", id) ==
              "hub:https://hub/org/model");
  fs::remove_all(root);
}
