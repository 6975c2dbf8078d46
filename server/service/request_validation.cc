#include "server/service/request_validation.h"

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/registry/model_id.h"
#include "server/service/url_policy.h"
#include "server/text/utf8.h"

namespace pg::service {

bool IsBlankPrompt(std::string_view prompt) {
  for (size_t pos = 0; pos < prompt.size();) {
    const size_t len = text::utf8::ValidSequenceLength(prompt, pos);
    if (len == 0) return false;
    const char32_t c = text::utf8::DecodeAt(prompt, pos, len);
    const bool invisible =
        c == 0x180E || (c >= 0x200B && c <= 0x200D) || c == 0x2060 || c == 0xFEFF;
    if (!text::utf8::IsWhitespace(c) && !invisible) return false;
    pos += len;
  }
  return true;
}

absl::StatusOr<ParsedSegmentRequest> ParseSegmentRequest(
    const paligemma::v1::SegmentRequest& request, const RequestLimits& limits) {
  ParsedSegmentRequest out;
  if (IsBlankPrompt(request.prompt())) {
    return absl::InvalidArgumentError("prompt is empty (e.g. \"segment left wheel\")");
  }
  if (request.prompt().size() > limits.max_prompt_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt is ", request.prompt().size(), " bytes; the limit is ", limits.max_prompt_bytes));
  }
  const bool has_data = !request.image_data().empty();
  const bool has_url = !request.image_url().empty();
  if (has_data == has_url) {
    return absl::InvalidArgumentError(
        has_data ? "give exactly one image source: image_data or image_url, not both"
                 : "no image: give image_data (the encoded image) or image_url");
  }
  if (has_data && static_cast<int64_t>(request.image_data().size()) > limits.max_image_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("image_data is ", request.image_data().size(),
                                                   " bytes; the limit is ",
                                                   limits.max_image_bytes));
  }
  if (has_url) RETURN_IF_ERROR(CheckUrlSyntax(request.image_url()));
  if (!request.model_id().empty()) RETURN_IF_ERROR(registry::ValidateModelId(request.model_id()));
  out.options.max_new_tokens =
      request.has_max_new_tokens() ? request.max_new_tokens() : limits.default_max_new_tokens;
  if (out.options.max_new_tokens < 1 || out.options.max_new_tokens > limits.max_new_tokens_limit) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be between 1 and ",
                                                   limits.max_new_tokens_limit, ", got ",
                                                   out.options.max_new_tokens));
  }
  const auto& o = request.options();
  out.options.include_image = o.has_include_image() ? o.include_image() : true;
  out.options.include_full_masks = o.has_include_full_masks() ? o.include_full_masks() : true;
  out.prompt = request.prompt();
  out.image_data = request.image_data();
  out.image_url = request.image_url();
  out.model_id = request.model_id();
  return out;
}

}  // namespace pg::service
