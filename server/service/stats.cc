#include "server/service/stats.h"

#include <algorithm>

namespace pg::service {

const std::vector<double>& ServerStats::DurationBuckets() {
  static const std::vector<double> buckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                              2.5,   5,    10,    30,   60,  120,  300, 600};
  return buckets;
}

void ServerStats::RecordRequest(std::string_view method, std::string_view model,
                                std::string_view code, double duration_ms) {
  const auto& bounds = DurationBuckets();
  const double seconds = std::max(0.0, duration_ms / 1000.0);
  const size_t bucket =
      std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin();  // le semantics
  std::lock_guard<std::mutex> lock(mu_);
  std::string label(model);
  if (!label.empty() && models_seen_.find(label) == models_seen_.end()) {
    if (models_seen_.size() < kMaxModels) {
      models_seen_.emplace(label, true);
    } else {
      label = std::string(kOtherModel);
    }
  }
  ++requests_[{std::string(method), label, std::string(code)}];
  Histogram& h = durations_[std::string(method)];
  if (h.buckets.empty()) h.buckets.assign(bounds.size() + 1, 0);
  ++h.buckets[bucket];
  h.sum += seconds;
  ++h.count;
}

void ServerStats::RecordStage(std::string_view stage, double ms) {
  std::lock_guard<std::mutex> lock(mu_);
  StageSnapshot& s = stages_[std::string(stage)];
  s.sum_ms += ms;
  ++s.count;
}

void ServerStats::AddTokens(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  tokens_ += n;
}

StatsSnapshot ServerStats::Snapshot() const {
  StatsSnapshot out;
  out.uptime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::lock_guard<std::mutex> lock(mu_);
  out.requests = requests_;
  out.stages = stages_;
  out.tokens_generated = tokens_;
  const auto& bounds = DurationBuckets();
  for (const auto& [method, h] : durations_) {
    HistogramSnapshot& s = out.durations[method];
    s.bounds = bounds;
    s.counts.resize(bounds.size());
    uint64_t running = 0;
    for (size_t i = 0; i < bounds.size(); ++i) {
      running += h.buckets[i];
      s.counts[i] = running;
    }
    s.sum = h.sum;
    s.count = h.count;
  }
  return out;
}

}  // namespace pg::service
