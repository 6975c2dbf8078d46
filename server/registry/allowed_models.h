// Which model ids a request may bring in from the Hub: --allowed_models, comma-separated glob
// patterns matched with fnmatch(3) ('*' and '?' also match '/', "[...]" classes work). The
// registry also always serves --default_model and bundles already under MODELS_DIR/bundles/; an id
// outside all three is refused before the registry records it or touches the network.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pg::registry {

inline constexpr char kDefaultAllowedModels[] = "google/paligemma2-*";

// Splits "a/*, b/c" into {"a/*", "b/c"} (blank entries dropped). InvalidArgument for a pattern
// with characters no model id or glob holds (so a typo such as a stray quote is caught at start).
absl::StatusOr<std::vector<std::string>> ParseAllowedModels(std::string_view text);

// True when `id` matches one of `patterns`.
bool MatchesAllowedModels(const std::vector<std::string>& patterns, const std::string& id);

}  // namespace pg::registry
