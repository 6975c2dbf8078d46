// The exported tiny bundle, run through LibTorch from C++, must reproduce transformers' golden
// outputs.
#include <torch/script.h>

#include <catch2/catch.hpp>

#include "server/model/paligemma.h"
#include "tests/unit/test_support.h"

namespace {

using pg::model::PaliGemma;
using pg::testing::Fixture;

const nlohmann::json& Golden() {
  static const nlohmann::json golden =
      pg::testing::ReadJson(Fixture("paligemma2-tiny/golden.json"))["cases"][0];
  return golden;
}

const PaliGemma& Model() {
  static std::unique_ptr<PaliGemma> model = [] {
    auto loaded = PaliGemma::Load(pg::testing::TinyBundle());
    if (!loaded.ok()) throw std::runtime_error(std::string(loaded.status().message()));
    return std::move(loaded).value();
  }();
  return *model;
}

torch::Tensor GoldenFeatures() {
  auto pixels = Golden()["pixel_values"].get<std::vector<float>>();
  auto features = Model().EncodeImage(pixels);
  if (!features.ok()) throw std::runtime_error(std::string(features.status().message()));
  return features->to(torch::kFloat32);
}

std::vector<int32_t> GoldenPrefix() {
  auto ids = Golden()["input_ids"].get<std::vector<int32_t>>();
  const int n = Model().manifest().num_image_tokens;
  return std::vector<int32_t>(ids.begin() + n, ids.end());
}

double MaxAbs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

CATCH_TEST_CASE("vision tower and projector match transformers", "[parity]") {
  auto golden =
      torch::tensor(Golden()["image_features"].get<std::vector<float>>()).reshape({16, 32});
  const double err = MaxAbs(GoldenFeatures()[0], golden);
  CATCH_INFO("projector max abs error " << err);
  CATCH_CHECK(err <= 1e-4);
}

CATCH_TEST_CASE("prefill logits and argmax at every prompt position match transformers",
                "[parity]") {
  auto features = GoldenFeatures();
  auto logits = Model().PrefixLogits({features[0], GoldenPrefix()});
  CATCH_REQUIRE(logits.ok());
  const auto& g = Golden();
  auto expected_argmax = g["prefill_all_positions_argmax"].get<std::vector<int64_t>>();
  CATCH_REQUIRE(logits->size(0) == static_cast<int64_t>(expected_argmax.size()));
  auto argmax = logits->argmax(-1);
  for (size_t i = 0; i < expected_argmax.size(); ++i) {
    CATCH_INFO("position " << i);
    CATCH_CHECK(argmax[i].item<int64_t>() == expected_argmax[i]);
  }
  auto last = (*logits)[logits->size(0) - 1];
  auto top_ids = g["prefill_last_top20_ids"].get<std::vector<int64_t>>();
  auto top_logits = torch::tensor(g["prefill_last_top20_logits_capped"].get<std::vector<float>>());
  const double top_err = MaxAbs(last.index_select(0, torch::tensor(top_ids)), top_logits);
  auto stride = torch::tensor(g["prefill_last_stride997"].get<std::vector<float>>());
  const double stride_err =
      MaxAbs(last.index_select(0, torch::arange(0, last.size(0), 997)), stride);
  // The golden's prefill_last_* fields were evidently computed without Gemma 2's attention soft-cap
  // (transformers' SDPA path ignores it): with the cap they differ by ~1.6e-3, without it by ~1e-6.
  // Its ref_steps (from generate, eager attention, cap on) pin the same position exactly, so the
  // tight check is against those and prefill_last_* gets the cap's known drift as tolerance.
  auto step0 = g["ref_steps"][0];
  auto step0_ids = step0["top5_ids"].get<std::vector<int64_t>>();
  auto step0_logits = torch::tensor(step0["top5_logits"].get<std::vector<float>>());
  const double step0_err = MaxAbs(last.index_select(0, torch::tensor(step0_ids)), step0_logits);
  CATCH_INFO("ref_steps[0] top5 max abs error " << step0_err << ", prefill_last top20 " << top_err
                                                << ", stride-997 " << stride_err);
  CATCH_CHECK(step0_err <= 1e-4);
  CATCH_CHECK(top_err <= 3e-3);
  CATCH_CHECK(stride_err <= 3e-3);
  CATCH_CHECK(last.argmax().item<int64_t>() == top_ids[0]);
}

CATCH_TEST_CASE("24 greedy tokens with the KV cache equal transformers' generate", "[parity]") {
  pg::model::GenerateOptions options;
  options.max_new_tokens = 24;
  options.suppress_eos = true;
  auto out = Model().Generate({{GoldenFeatures()[0], GoldenPrefix()}}, options);
  CATCH_REQUIRE(out.ok());
  auto expected = Golden()["hf_greedy_24"].get<std::vector<int32_t>>();
  CATCH_CHECK(out->front().tokens == expected);
}

CATCH_TEST_CASE("frozen modules give the same vision features and greedy tokens",
                "[parity][freeze]") {
  pg::model::LoadOptions frozen_options;
  frozen_options.freeze = true;
  auto frozen = PaliGemma::Load(pg::testing::TinyBundle(), frozen_options);
  CATCH_REQUIRE(frozen.ok());
  CATCH_CHECK((*frozen)->load_timings().freeze_ms > 0);
  const int s = Model().manifest().image_size;
  std::vector<float> pixels(3 * s * s);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>(i % 97) / 48.0f - 1.0f;
  auto a = Model().EncodeImage(pixels);
  auto b = (*frozen)->EncodeImage(pixels);
  CATCH_REQUIRE(a.ok());
  CATCH_REQUIRE(b.ok());
  CATCH_CHECK(torch::equal(*a, *b));
  pg::model::GenerateOptions options;
  options.max_new_tokens = 24;
  options.suppress_eos = true;
  auto out = (*frozen)->Generate({{GoldenFeatures()[0], GoldenPrefix()}}, options);
  CATCH_REQUIRE(out.ok());
  CATCH_CHECK(out->front().tokens == Golden()["hf_greedy_24"].get<std::vector<int32_t>>());
}

CATCH_TEST_CASE("a batch of two different prompts equals each prompt alone", "[parity][batch]") {
  auto features = GoldenFeatures()[0];
  std::vector<int32_t> other = {2, 32318, 573, 3118, 1226, 235248, 9721, 108};  // longer prompt
  auto shifted = features.flip(0).contiguous();  // a different "image" for the second row
  pg::model::GenerateOptions options;
  options.max_new_tokens = 12;
  options.suppress_eos = true;
  auto batch = Model().Generate({{features, GoldenPrefix()}, {shifted, other}}, options);
  auto first = Model().Generate({{features, GoldenPrefix()}}, options);
  auto second = Model().Generate({{shifted, other}}, options);
  CATCH_REQUIRE(batch.ok());
  CATCH_REQUIRE(first.ok());
  CATCH_REQUIRE(second.ok());
  CATCH_CHECK((*batch)[0].tokens == first->front().tokens);
  CATCH_CHECK((*batch)[1].tokens == second->front().tokens);
  CATCH_CHECK((*batch)[0].tokens != (*batch)[1].tokens);
}

CATCH_TEST_CASE("generation stops at max_new_tokens and when asked to stop", "[generate]") {
  pg::model::GenerateOptions options;
  options.max_new_tokens = 5;
  options.suppress_eos = true;
  auto out = Model().Generate({{GoldenFeatures()[0], GoldenPrefix()}}, options);
  CATCH_REQUIRE(out.ok());
  CATCH_CHECK(out->front().tokens.size() == 5);
  int calls = 0;
  options.max_new_tokens = 20;
  options.should_stop = [&] { return ++calls >= 3; };
  out = Model().Generate({{GoldenFeatures()[0], GoldenPrefix()}}, options);
  CATCH_REQUIRE(out.ok());
  CATCH_CHECK(out->front().stopped_early);
  CATCH_CHECK(out->front().tokens.size() == 3);
}

CATCH_TEST_CASE("VAE decoder matches the Flax decoder's golden masks", "[parity][vae]") {
  auto golden = pg::testing::ReadJson(Fixture("vae/vae-golden.json"));
  std::vector<std::array<int, 16>> codes = golden["codes"].get<std::vector<std::array<int, 16>>>();
  auto masks = Model().DecodeMasks(codes);
  CATCH_REQUIRE(masks.ok());
  CATCH_REQUIRE(masks->size() == 2);
  double err = 0;
  for (size_t b = 0; b < 2; ++b) {
    for (int y = 0; y < 64; ++y) {
      for (int x = 0; x < 64; ++x) {
        double expected = golden["masks"][b][y][x].get<double>();
        err = std::max(err, std::abs(expected - (*masks)[b][y * 64 + x]));
      }
    }
  }
  CATCH_INFO("VAE max abs error " << err);
  CATCH_CHECK(err <= 1e-4);
}

CATCH_TEST_CASE("bad model inputs are errors, not crashes", "[model][errors]") {
  CATCH_CHECK(Model().EncodeImage(std::vector<float>(10)).status().code() ==
              absl::StatusCode::kInvalidArgument);
  pg::model::GenerateOptions options;
  options.max_new_tokens = 0;
  CATCH_CHECK(!Model().Generate({{GoldenFeatures()[0], GoldenPrefix()}}, options).ok());
  options.max_new_tokens = 100000;
  CATCH_CHECK(Model().Generate({{GoldenFeatures()[0], GoldenPrefix()}}, options).status().code() ==
              absl::StatusCode::kInvalidArgument);
  CATCH_CHECK(!Model().Generate({{GoldenFeatures()[0], {}}}, {}).ok());
}

// bfloat16 compute (--dtype bfloat16) is an option, not the parity path: this measures its drift
// from the transformers fp32 golden (docs/performance.md records the numbers) and bounds it
// loosely.
CATCH_TEST_CASE("bfloat16 drift from the fp32 golden is measured and bounded", "[parity][bf16]") {
  pg::model::LoadOptions lo;
  lo.dtype = "bfloat16";
  auto bf16 = PaliGemma::Load(pg::testing::TinyBundle(), lo);
  CATCH_REQUIRE(bf16.ok());
  auto features = (*bf16)->EncodeImage(Golden()["pixel_values"].get<std::vector<float>>());
  CATCH_REQUIRE(features.ok());
  auto golden_features =
      torch::tensor(Golden()["image_features"].get<std::vector<float>>()).reshape({16, 32});
  const double feature_err = MaxAbs((*features)[0].to(torch::kFloat32), golden_features);
  auto logits = (*bf16)->PrefixLogits({(*features)[0], GoldenPrefix()});
  CATCH_REQUIRE(logits.ok());
  auto expected_argmax = Golden()["prefill_all_positions_argmax"].get<std::vector<int64_t>>();
  auto argmax = logits->argmax(-1);
  int same_argmax = 0;
  for (size_t i = 0; i < expected_argmax.size(); ++i) {
    same_argmax += argmax[i].item<int64_t>() == expected_argmax[i];
  }
  auto step0 = Golden()["ref_steps"][0];
  auto last = (*logits)[logits->size(0) - 1];
  const double step0_err =
      MaxAbs(last.index_select(0, torch::tensor(step0["top5_ids"].get<std::vector<int64_t>>())),
             torch::tensor(step0["top5_logits"].get<std::vector<float>>()));
  pg::model::GenerateOptions options;
  options.max_new_tokens = 24;
  options.suppress_eos = true;
  auto out = (*bf16)->Generate({{(*features)[0], GoldenPrefix()}}, options);
  CATCH_REQUIRE(out.ok());
  auto expected = Golden()["hf_greedy_24"].get<std::vector<int32_t>>();
  size_t prefix_match = 0;
  while (prefix_match < expected.size() &&
         out->front().tokens[prefix_match] == expected[prefix_match]) {
    ++prefix_match;
  }
  std::cout << "bf16 drift: projector max abs " << feature_err
            << ", last-position top5 logits max abs " << step0_err << ", prefill argmax equal at "
            << same_argmax << "/" << expected_argmax.size()
            << " positions, greedy tokens equal for the first " << prefix_match << "/24\n";
  CATCH_CHECK(torch::isfinite(*logits).all().item<bool>());
  CATCH_CHECK(feature_err < 0.5);
  CATCH_CHECK(step0_err < 1.0);
}
