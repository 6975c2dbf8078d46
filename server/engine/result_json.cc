#include "server/engine/result_json.h"

#include "absl/strings/escaping.h"

namespace pg::engine {

nlohmann::json ResultToJson(const SegmentResult& r, bool show_tokens) {
  nlohmann::json masks = nlohmann::json::array();
  for (const auto& m : r.masks) {
    nlohmann::json j;
    j["mask"] = absl::Base64Escape(m.mask_png);
    j["coordinates"] = m.coordinates;
    j["label"] = m.label;
    j["box"] = m.box;
    j["has_mask"] = m.has_mask;
    if (!m.full_mask_png.empty()) j["full_mask"] = absl::Base64Escape(m.full_mask_png);
    masks.push_back(std::move(j));
  }
  nlohmann::json out;
  out["image"] = absl::Base64Escape(r.image_png);
  out["masks"] = std::move(masks);
  out["text"] = r.text;
  out["original_size"] = {r.original_width, r.original_height};
  out["timings"] = {{"preprocess_ms", r.timings.preprocess_ms}, {"vision_ms", r.timings.vision_ms},
                    {"prefill_ms", r.timings.prefill_ms},       {"decode_ms", r.timings.decode_ms},
                    {"masks_ms", r.timings.masks_ms},           {"total_ms", r.timings.total_ms}};
  if (show_tokens) {
    out["prompt_token_ids"] = r.prompt_token_ids;
    out["generated_token_ids"] = r.generated_token_ids;
  }
  return out;
}

}  // namespace pg::engine
