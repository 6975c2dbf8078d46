// Model ids as users write them ("google/paligemma2-3b-mix-448", "tiny") and the folders they map
// to. Ids become paths, so they are checked before anything touches the disk or the network.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace pg::registry {

// OK for "name" or "org/name" where each part is 1-96 of [A-Za-z0-9._-], does not start with '.' or
// '-' and holds no "--" or ".." (the Hub's own rules; "--" is also the HF cache's separator).
// Anything else is InvalidArgument with the reason.
absl::Status ValidateModelId(std::string_view id);

// The Hugging Face cache folder name of a repo: "org/name" -> "models--org--name".
std::string HfCacheFolderName(std::string_view id);

}  // namespace pg::registry
