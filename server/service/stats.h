// The server's own counters since start, for ModelService.GetStats (and through the gateway,
// Prometheus' /metrics): requests by (method, model, code), a request-duration histogram per
// method, per-stage time sums and tokens generated. Plain C++ behind one mutex (a few updates per
// request); the service layer converts a Snapshot() to proto. Per-model live state (queue depth,
// running sequences, decode batches, caches, load progress) is read from the registry at snapshot
// time.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace pg::service {

// Prometheus-style histogram: counts[i] is the number of observations <= bounds[i] (cumulative);
// the implicit +Inf bucket is `count`.
struct HistogramSnapshot {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
  double sum = 0;
  uint64_t count = 0;
};

struct StageSnapshot {
  double sum_ms = 0;
  uint64_t count = 0;
};

struct StatsSnapshot {
  double uptime_s = 0;
  // (method, model, code) -> requests answered.
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> requests;
  // method -> request duration in seconds.
  std::map<std::string, HistogramSnapshot> durations;
  // stage ("queue", "fetch", "preprocess", "vision", "prefill", "decode", "masks") -> time.
  std::map<std::string, StageSnapshot> stages;
  uint64_t tokens_generated = 0;
};

class ServerStats {
 public:
  // Upper bounds (seconds) of the request-duration buckets: 5 ms .. 10 min (CPU requests take
  // seconds).
  static const std::vector<double>& DurationBuckets();
  // Distinct model labels kept; requests naming further models count under kOtherModel, so a client
  // sending random model ids cannot grow the stats (or the gateway's metric series) without bound.
  static constexpr size_t kMaxModels = 32;
  static constexpr std::string_view kOtherModel = "(other)";

  ServerStats() : start_(std::chrono::steady_clock::now()) {}

  // One answered request: `method` e.g. "Segment", `model` the model id ("" when none applies),
  // `code` the gRPC code name ("OK", "INVALID_ARGUMENT", ...).
  void RecordRequest(std::string_view method, std::string_view model, std::string_view code,
                     double duration_ms);
  void RecordStage(std::string_view stage, double ms);
  void AddTokens(uint64_t n);

  StatsSnapshot Snapshot() const;

 private:
  struct Histogram {
    std::vector<uint64_t> buckets;  // per bucket, not cumulative; the last one is +Inf
    double sum = 0;
    uint64_t count = 0;
  };

  const std::chrono::steady_clock::time_point start_;
  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> requests_;
  std::map<std::string, Histogram> durations_;
  std::map<std::string, StageSnapshot> stages_;
  std::map<std::string, bool, std::less<>> models_seen_;
  uint64_t tokens_ = 0;
};

}  // namespace pg::service
