// The server's counters (server/service/stats.h) and its one-line JSON logger
// (server/common/log.h).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server/common/log.h"
#include "server/service/stats.h"

using pg::service::ServerStats;

CATCH_TEST_CASE("requests are counted by method, model and code") {
  ServerStats stats;
  stats.RecordRequest("Segment", "tiny", "OK", 12);
  stats.RecordRequest("Segment", "tiny", "OK", 30);
  stats.RecordRequest("Segment", "", "INVALID_ARGUMENT", 1);
  stats.RecordRequest("ListModels", "", "OK", 2);
  const auto s = stats.Snapshot();
  CATCH_CHECK(s.requests.size() == 3);
  CATCH_CHECK(s.requests.at({"Segment", "tiny", "OK"}) == 2);
  CATCH_CHECK(s.requests.at({"Segment", "", "INVALID_ARGUMENT"}) == 1);
  CATCH_CHECK(s.requests.at({"ListModels", "", "OK"}) == 1);
  CATCH_CHECK(s.uptime_s >= 0);
}

CATCH_TEST_CASE("the duration histogram is cumulative with Prometheus' le semantics") {
  ServerStats stats;
  const auto& bounds = ServerStats::DurationBuckets();
  CATCH_REQUIRE(std::is_sorted(bounds.begin(), bounds.end()));
  stats.RecordRequest("Segment", "m", "OK", 5);     // 0.005 s: exactly on the first bound
  stats.RecordRequest("Segment", "m", "OK", 7);     // 0.007 s
  stats.RecordRequest("Segment", "m", "OK", 2000);  // 2 s
  stats.RecordRequest("Segment", "m", "OK", 1e7);   // past the last bound: only in +Inf (count)
  const auto s = stats.Snapshot();
  const auto& h = s.durations.at("Segment");
  CATCH_REQUIRE(h.bounds == bounds);
  CATCH_REQUIRE(h.counts.size() == bounds.size());
  for (size_t i = 0; i < bounds.size(); ++i) {
    CATCH_INFO("le " << bounds[i]);
    const uint64_t want = (bounds[i] >= 0.005) + (bounds[i] >= 0.007) + (bounds[i] >= 2.0);
    CATCH_CHECK(h.counts[i] == want);
  }
  CATCH_CHECK(h.count == 4);
  CATCH_CHECK(h.sum == Approx(0.005 + 0.007 + 2 + 1e4));
  CATCH_CHECK(s.durations.count("ListModels") == 0);
}

CATCH_TEST_CASE("stage times and tokens add up") {
  ServerStats stats;
  stats.RecordStage("decode", 10.5);
  stats.RecordStage("decode", 4.5);
  stats.RecordStage("vision", 3);
  stats.AddTokens(7);
  stats.AddTokens(5);
  const auto s = stats.Snapshot();
  CATCH_CHECK(s.stages.at("decode").sum_ms == Approx(15));
  CATCH_CHECK(s.stages.at("decode").count == 2);
  CATCH_CHECK(s.stages.at("vision").count == 1);
  CATCH_CHECK(s.tokens_generated == 12);
}

CATCH_TEST_CASE("model labels are capped so random model ids cannot grow the stats") {
  ServerStats stats;
  for (size_t i = 0; i < ServerStats::kMaxModels + 10; ++i) {
    stats.RecordRequest("Segment", "m" + std::to_string(i), "NOT_FOUND", 1);
  }
  stats.RecordRequest("Segment", "m0", "NOT_FOUND", 1);  // a known one keeps its label
  const auto s = stats.Snapshot();
  CATCH_CHECK(s.requests.size() == ServerStats::kMaxModels + 1);
  CATCH_CHECK(s.requests.at({"Segment", "m0", "NOT_FOUND"}) == 2);
  CATCH_CHECK(s.requests.at({"Segment", std::string(ServerStats::kOtherModel), "NOT_FOUND"}) == 10);
}

CATCH_TEST_CASE("concurrent updates are all counted") {
  ServerStats stats;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        stats.RecordRequest("Segment", "m", "OK", 1);
        stats.AddTokens(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto s = stats.Snapshot();
  CATCH_CHECK(s.requests.at({"Segment", "m", "OK"}) == 4000);
  CATCH_CHECK(s.durations.at("Segment").count == 4000);
  CATCH_CHECK(s.tokens_generated == 4000);
}

namespace pglog = pg::log;

CATCH_TEST_CASE("JSON strings are escaped") {
  CATCH_CHECK(pglog::Quote("plain") == "\"plain\"");
  CATCH_CHECK(pglog::Quote("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CATCH_CHECK(pglog::Quote("l1\nl2\r\t") == "\"l1\\nl2\\r\\t\"");
  CATCH_CHECK(pglog::Quote(std::string("\x01\x1f\x7f", 3)) == "\"\\u0001\\u001f\\u007f\"");
  CATCH_CHECK(pglog::Quote(std::string("nul\0byte", 8)) == "\"nul\\u0000byte\"");
  CATCH_CHECK(pglog::Quote("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
              "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");  // valid UTF-8 kept
  CATCH_CHECK(pglog::Quote("bad \xff end") == "\"bad \xef\xbf\xbd end\"");
  CATCH_CHECK(pglog::Quote("cut \xe2\x82") == "\"cut \xef\xbf\xbd\xef\xbf\xbd\"");
  CATCH_CHECK(pglog::Quote("overlong \xc0\xaf") == "\"overlong \xef\xbf\xbd\xef\xbf\xbd\"");
  CATCH_CHECK(pglog::Quote("surrogate \xed\xa0\x80") ==
              "\"surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
}

CATCH_TEST_CASE("a log line is one JSON object with ts, level, msg and the fields") {
  const std::string nasty = std::string("x\"\n\\\x02\xff", 6);
  const std::string line = pglog::Format(pglog::Level::kWarn, "msg \"quoted\"\n",
                                         {{"request_id", "rid-1"},
                                          {"n", 42},
                                          {"neg", -3LL},
                                          {"big", uint64_t{1} << 40},
                                          {"ms", 12.3456},
                                          {"nan", std::nan("")},
                                          {"inf", std::numeric_limits<double>::infinity()},
                                          {"ok", true},
                                          {"nasty", nasty},
                                          {"we\"ird key", "v"}});
  CATCH_CHECK(line.find('\n') == std::string::npos);
  const auto j = nlohmann::json::parse(line);  // throws (fails the test) if not valid JSON
  CATCH_CHECK(j.at("level") == "warn");
  CATCH_CHECK(j.at("msg") == "msg \"quoted\"\n");
  CATCH_CHECK(j.at("request_id") == "rid-1");
  CATCH_CHECK(j.at("n") == 42);
  CATCH_CHECK(j.at("neg") == -3);
  CATCH_CHECK(j.at("big") == (uint64_t{1} << 40));
  CATCH_CHECK(j.at("ms").get<double>() == Approx(12.346));
  CATCH_CHECK(j.at("nan").is_null());
  CATCH_CHECK(j.at("inf").is_null());
  CATCH_CHECK(j.at("ok") == true);
  CATCH_CHECK(j.at("nasty") == "x\"\n\\\x02\xef\xbf\xbd");
  CATCH_CHECK(j.at("we\"ird key") == "v");
  const std::string ts = j.at("ts");
  CATCH_CHECK(ts.size() == 24);  // 2025-01-02T03:04:05.678Z
  CATCH_CHECK(ts[10] == 'T');
  CATCH_CHECK(ts.back() == 'Z');
  // Keys come in order: ts, level, msg, then the fields as given.
  CATCH_CHECK(line.rfind("{\"ts\":", 0) == 0);
  CATCH_CHECK(line.find("\"level\"") < line.find("\"msg\""));
  CATCH_CHECK(line.find("\"request_id\"") < line.find("\"nasty\""));
}

CATCH_TEST_CASE("concurrent writers never interleave lines") {
  std::ostringstream sink;
  pglog::SetSinkForTesting(&sink);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) {
        pglog::Info("request", {{"thread", t}, {"i", i}, {"pad", std::string(300, 'p')}});
      }
    });
  }
  for (auto& t : threads) t.join();
  pglog::SetSinkForTesting(nullptr);
  std::istringstream in(sink.str());
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    CATCH_CHECK(j.at("msg") == "request");
    ++n;
  }
  CATCH_CHECK(n == 800);
}
