#include "server/registry/allowed_models.h"

#include <fnmatch.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pg::registry {

absl::StatusOr<std::vector<std::string>> ParseAllowedModels(std::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    const absl::string_view pattern = absl::StripAsciiWhitespace(part);
    if (pattern.empty()) continue;
    for (char c : pattern) {
      if (!absl::ascii_isalnum(c) && std::string_view("._-/*?[]!").find(c) == std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("--allowed_models: pattern '", pattern, "' holds '", std::string(1, c),
                         "' (patterns are model ids with *, ? and [...])"));
      }
    }
    out.emplace_back(pattern);
  }
  return out;
}

bool MatchesAllowedModels(const std::vector<std::string>& patterns, const std::string& id) {
  for (const auto& p : patterns) {
    if (fnmatch(p.c_str(), id.c_str(), 0) == 0) return true;
  }
  return false;
}

}  // namespace pg::registry
