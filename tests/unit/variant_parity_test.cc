// The C++ engine on tiny random checkpoints that keep each PaliGemma 2 variant's structure
// (head_dim != hidden / heads, query_pre_attn_scalar != head_dim, a prefix longer than the sliding
// window, attention logits the soft-cap changes), exported from Hub minimal-form configs by the
// `variant_bundles` fixture (tests/exporter/variants.py), must give the independent Python
// reference's features, logits and greedy tokens (tests/exporter/reference.py).
#include <torch/script.h>

#include <catch2/catch.hpp>
#include <cstdlib>

#include "server/model/paligemma.h"
#include "tests/unit/test_support.h"

namespace {

using pg::model::PaliGemma;

std::string VariantDir(const std::string& name) {
  const char* build = std::getenv("PG_BUILD_DIR");
  return std::string(build ? build : "build") + "/variant-bundles/" + name;
}

double MaxAbs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

CATCH_TEST_CASE("the engine matches the reference on every tiny variant", "[parity][variants]") {
  for (const std::string name : {"like-3b", "like-28b", "like-896", "large-logits"}) {
    CATCH_INFO("variant " << name);
    const auto ref = pg::testing::ReadJson(VariantDir(name) + "/reference.json");
    auto loaded = PaliGemma::Load(VariantDir(name) + "/bundle");
    CATCH_REQUIRE(loaded.ok());
    const PaliGemma& model = **loaded;

    auto features = model.EncodeImage(ref["pixel_values"].get<std::vector<float>>());
    CATCH_REQUIRE(features.ok());
    auto shape = ref["image_features_shape"].get<std::vector<int64_t>>();
    auto expected = torch::tensor(ref["image_features"].get<std::vector<float>>()).reshape(shape);
    const double feature_err = MaxAbs((*features)[0].to(torch::kFloat32), expected);
    CATCH_CHECK(feature_err <= 1e-4);

    pg::model::PromptInput prompt{(*features)[0], ref["prompt"].get<std::vector<int32_t>>()};
    auto logits = model.PrefixLogits(prompt);
    CATCH_REQUIRE(logits.ok());
    auto last = (*logits)[logits->size(0) - 1];
    auto top = ref["last_prefix_logits_top"].get<std::vector<int64_t>>();
    auto top_values = torch::tensor(ref["last_prefix_logits_top_values"].get<std::vector<float>>());
    auto stride = torch::tensor(ref["last_prefix_logits_stride997"].get<std::vector<float>>());
    const double top_err = MaxAbs(last.index_select(0, torch::tensor(top)), top_values);
    const double stride_err =
        MaxAbs(last.index_select(0, torch::arange(0, last.size(0), 997)), stride);
    CATCH_CHECK(top_err <= 1e-4);
    CATCH_CHECK(stride_err <= 1e-4);

    auto expected_tokens = ref["greedy_tokens"].get<std::vector<int32_t>>();
    pg::model::GenerateOptions options;
    options.max_new_tokens = static_cast<int>(expected_tokens.size());
    options.suppress_eos = true;
    auto out = model.Generate({prompt}, options);
    CATCH_REQUIRE(out.ok());
    CATCH_CHECK(out->front().tokens == expected_tokens);
    std::printf("%s: features %.1e, last-prefix logits %.1e / %.1e, %zu greedy tokens %s\n",
                name.c_str(), feature_err, top_err, stride_err, expected_tokens.size(),
                out->front().tokens == expected_tokens ? "equal" : "DIFFERENT");
  }
}
