// The edge: a proto SegmentRequest becomes native values (the engine never sees proto), and
// everything a client can get wrong is rejected here with INVALID_ARGUMENT and a message saying
// what and why.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "paligemma/v1/paligemma.pb.h"
#include "server/engine/types.h"

namespace pg::service {

struct RequestLimits {
  size_t max_prompt_bytes = 2048;
  int64_t max_image_bytes = 20 * 1024 * 1024;
  int default_max_new_tokens = 256;
  int max_new_tokens_limit = 1024;
};

struct ParsedSegmentRequest {
  std::string prompt;
  std::string image_data;  // exactly one of image_data and image_url is set
  std::string image_url;
  std::string model_id;  // empty = the default model
  engine::SegmentOptions options;
};

// True when `prompt` shows nothing: every code point is Unicode White_Space or an invisible
// format character a tokenizer would keep but no reader can see (U+180E, U+200B-200D, U+2060,
// U+FEFF). Bytes that are not UTF-8 are something, so they are not blank.
bool IsBlankPrompt(std::string_view prompt);

absl::StatusOr<ParsedSegmentRequest> ParseSegmentRequest(
    const paligemma::v1::SegmentRequest& request, const RequestLimits& limits);

}  // namespace pg::service
