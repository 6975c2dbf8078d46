// SegmentResult as JSON with the API's field names (the reference app's image/masks[mask,
// coordinates] plus ours). Used by the CLI; the gRPC service maps to proto instead.
#pragma once

#include <nlohmann/json.hpp>

#include "server/engine/types.h"

namespace pg::engine {

nlohmann::json ResultToJson(const SegmentResult& result, bool show_tokens);

}  // namespace pg::engine
