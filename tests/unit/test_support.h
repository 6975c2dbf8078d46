// Helpers shared by the C++ tests: fixture paths and small file readers.
#pragma once

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>

namespace pg::testing {

inline std::string Fixture(const std::string& relative) {
  return std::string(PG_FIXTURES_DIR) + "/" + relative;
}

// The tiny bundle exported by the `export_tiny_bundle` ctest fixture (or PG_TINY_BUNDLE when run by
// hand).
inline std::string TinyBundle() {
  if (const char* dir = std::getenv("PG_TINY_BUNDLE")) return dir;
  if (const char* build = std::getenv("PG_BUILD_DIR")) return std::string(build) + "/tiny-bundle";
  return "build/tiny-bundle";
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline nlohmann::json ReadJson(const std::string& path) {
  return nlohmann::json::parse(ReadFile(path));
}

}  // namespace pg::testing
