// Wall-clock helpers for the per-stage timings every layer reports.
#pragma once

#include <chrono>

namespace pg {

using Clock = std::chrono::steady_clock;

inline double Ms(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

}  // namespace pg
