// Continuous batching: requests submitted from many threads, joining and leaving the decode batch
// at different steps, must produce exactly the tokens each produces alone (and the transformers
// golden).
#include "server/engine/scheduler.h"

#include <torch/script.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "server/engine/segmenter.h"
#include "tests/unit/test_support.h"

namespace {

using pg::engine::Scheduler;
using pg::engine::SchedulerOptions;
using pg::model::GenerateOptions;
using pg::model::PaliGemma;
using pg::model::PromptInput;

const PaliGemma& Model() {
  static std::unique_ptr<PaliGemma> model = [] {
    auto loaded = PaliGemma::Load(pg::testing::TinyBundle());
    if (!loaded.ok()) throw std::runtime_error(std::string(loaded.status().message()));
    return std::move(loaded).value();
  }();
  return *model;
}

const nlohmann::json& Golden() {
  static const nlohmann::json golden =
      pg::testing::ReadJson(pg::testing::Fixture("paligemma2-tiny/golden.json"))["cases"][0];
  return golden;
}

torch::Tensor GoldenFeatures() {
  auto features = Model().EncodeImage(Golden()["pixel_values"].get<std::vector<float>>());
  if (!features.ok()) throw std::runtime_error(std::string(features.status().message()));
  return (*features)[0];
}

std::vector<int32_t> GoldenPrefix() {
  auto ids = Golden()["input_ids"].get<std::vector<int32_t>>();
  return std::vector<int32_t>(ids.begin() + Model().manifest().num_image_tokens, ids.end());
}

struct Case {
  PromptInput prompt;
  int max_new_tokens;
  bool suppress_eos;
};

std::vector<Case> Cases() {
  auto features = GoldenFeatures();
  std::vector<Case> cases;
  cases.push_back({{features, GoldenPrefix()}, 24, true});  // the golden
  const std::vector<std::vector<int32_t>> prompts = {
      {2, 32318, 573, 3118, 1226, 235248, 9721, 108},
      {2, 105, 2121, 108},
      {2, 32318, 4401, 108},
      {2, 7, 8, 9, 10, 11, 12, 13, 14, 15, 108},
  };
  for (int i = 0; i < 11; ++i) {
    auto f = i % 3 == 0 ? features : (i % 3 == 1 ? features.flip(0) : features * 0.5 + 0.1);
    cases.push_back({{f.contiguous(), prompts[i % prompts.size()]}, 5 + 3 * i, i % 2 == 0});
  }
  return cases;
}

}  // namespace

CATCH_TEST_CASE("concurrent requests through the scheduler equal each request alone",
                "[scheduler][batch]") {
  auto cases = Cases();
  std::vector<std::vector<int32_t>> alone;
  for (const auto& c : cases) {
    GenerateOptions o;
    o.max_new_tokens = c.max_new_tokens;
    o.suppress_eos = c.suppress_eos;
    auto g = Model().Generate({c.prompt}, o);
    CATCH_REQUIRE(g.ok());
    alone.push_back(g->front().tokens);
  }
  CATCH_CHECK(alone[0] == Golden()["hf_greedy_24"].get<std::vector<int32_t>>());

  SchedulerOptions so;
  so.max_batch = 4;  // fewer slots than requests: later ones queue, then join mid-batch
  so.max_queue = 64;
  so.max_len = 128;
  auto scheduler = Scheduler::Create(&Model(), so);
  CATCH_REQUIRE(scheduler.ok());
  for (int round = 0; round < 2; ++round) {
    std::vector<std::vector<int32_t>> got(cases.size());
    std::vector<std::string> errors(cases.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < cases.size(); ++i) {
      threads.emplace_back([&, i] {
        std::this_thread::sleep_for(std::chrono::milliseconds(round * 3 * (i % 4)));
        GenerateOptions o;
        o.max_new_tokens = cases[i].max_new_tokens;
        o.suppress_eos = cases[i].suppress_eos;
        auto g = (*scheduler)->Generate(cases[i].prompt, o);
        if (g.ok()) {
          got[i] = g->tokens;
        } else {
          errors[i] = std::string(g.status().message());
        }
      });
    }
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < cases.size(); ++i) {
      CATCH_INFO("round " << round << " request " << i << " " << errors[i]);
      CATCH_CHECK(errors[i].empty());
      CATCH_CHECK(got[i] == alone[i]);
    }
  }
  auto stats = (*scheduler)->stats();
  CATCH_INFO("largest decode batch " << stats.max_active_seen);
  CATCH_CHECK(stats.max_active_seen > 1);  // requests really shared decode steps
  CATCH_CHECK(stats.max_active_seen <= 4);
  CATCH_CHECK(stats.completed == 2 * cases.size());
}

CATCH_TEST_CASE("a full scheduler answers ResourceExhausted and stopping frees the slot",
                "[scheduler]") {
  SchedulerOptions so;
  so.max_batch = 1;
  so.max_queue = 0;
  so.max_len = 256;
  auto scheduler = Scheduler::Create(&Model(), so);
  CATCH_REQUIRE(scheduler.ok());
  const auto features = GoldenFeatures();
  const auto prefix = GoldenPrefix();
  std::atomic<bool> refusal_checked{false};
  std::atomic<int> polls{0};
  absl::StatusOr<pg::model::Generation> first = absl::UnknownError("not run");
  std::thread runner([&] {
    GenerateOptions o;
    o.max_new_tokens = 200;
    o.suppress_eos = true;
    // The scheduler polls a queued request once (under its lock) and a running one between
    // decode steps (outside it). Holding the loop at the second poll keeps the slot busy until
    // the refusal is checked: a fast machine could otherwise finish all 200 tiny tokens first.
    o.should_stop = [&] {
      if (++polls < 2) return false;
      for (int i = 0; i < 10000 && !refusal_checked.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      return true;
    };
    first = (*scheduler)->Generate({features, prefix}, o);
  });
  while (polls.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  GenerateOptions o;
  o.max_new_tokens = 4;
  auto refused = (*scheduler)->Generate({features, prefix}, o);
  CATCH_CHECK(refused.status().code() == absl::StatusCode::kResourceExhausted);
  refusal_checked = true;
  runner.join();
  CATCH_REQUIRE(first.ok());
  CATCH_CHECK(first->stopped_early);
  CATCH_CHECK(first->tokens.size() < 200);
  // The slot is free again.
  auto again = (*scheduler)->Generate({features, prefix}, o);
  CATCH_CHECK(again.ok());
  // Too long for a slot: a clear InvalidArgument, not a crash.
  o.max_new_tokens = 1000;
  CATCH_CHECK((*scheduler)->Generate({features, prefix}, o).status().code() ==
              absl::StatusCode::kInvalidArgument);
  CATCH_CHECK((*scheduler)->stats().rejected == 1);
}

CATCH_TEST_CASE("the same image twice skips the vision tower and the response cache is opt-in",
                "[engine][cache]") {
  pg::engine::EngineOptions options;
  options.response_cache_bytes = 1 << 20;
  auto created = pg::engine::Segmenter::Create(pg::testing::TinyBundle(), options);
  CATCH_REQUIRE(created.ok());
  const auto& engine = **created;
  pg::engine::SegmentRequest r;
  r.image_bytes = pg::testing::ReadFile(pg::testing::Fixture("images/chelsea.png"));
  r.prompt = "segment cat";
  r.options.max_new_tokens = 8;
  auto a = engine.Segment(r);
  CATCH_REQUIRE(a.ok());
  CATCH_CHECK(!a->vision_cache_hit);
  CATCH_CHECK(engine.vision_cache_stats().misses == 1);
  r.prompt = "detect cat";
  auto b = engine.Segment(r);
  CATCH_REQUIRE(b.ok());
  CATCH_CHECK(b->vision_cache_hit);
  CATCH_CHECK(!b->response_cache_hit);
  CATCH_CHECK(engine.vision_cache_stats().hits == 1);
  r.prompt = "segment cat";
  auto c = engine.Segment(r);
  CATCH_REQUIRE(c.ok());
  CATCH_CHECK(c->response_cache_hit);
  CATCH_CHECK(c->generated_token_ids == a->generated_token_ids);
  CATCH_CHECK(c->text == a->text);
  CATCH_CHECK(engine.response_cache_stats().hits == 1);
  CATCH_CHECK(engine.response_cache_stats().misses == 2);
  // A fresh engine without caches gives the same tokens for the second prompt.
  pg::engine::EngineOptions plain;
  plain.vision_cache_bytes = 0;
  auto fresh = pg::engine::Segmenter::Create(pg::testing::TinyBundle(), plain);
  CATCH_REQUIRE(fresh.ok());
  r.prompt = "detect cat";
  auto d = (*fresh)->Segment(r);
  CATCH_REQUIRE(d.ok());
  CATCH_CHECK(d->generated_token_ids == b->generated_token_ids);
  CATCH_CHECK((*fresh)->vision_cache_stats().hits == 0);
}
