// Structured logs: one JSON object per line on stderr ({"ts","level","msg", fields...}), written
// whole under a lock so lines from concurrent requests never interleave. Log collectors (Docker,
// Kubernetes, Loki) parse each line; the gateway logs the same shape, keyed by request_id.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace pg::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// One field's value, already rendered as JSON (a string quoted and escaped, a number as text).
class Value {
 public:
  Value(std::string_view s);                                     // NOLINT: implicit, so fields
  Value(const std::string& s) : Value(std::string_view(s)) {}    // NOLINT  read {"model", id}
  Value(const char* s) : Value(std::string_view(s ? s : "")) {}  // NOLINT
  Value(bool b) : json_(b ? "true" : "false") {}                 // NOLINT
  Value(double v);  // NOLINT: non-finite values become null (JSON has no NaN)
  template <typename T,
            typename = std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>>
  Value(T v) : json_(std::to_string(v)) {}  // NOLINT

  const std::string& json() const { return json_; }

 private:
  std::string json_;
};

using Field = std::pair<std::string_view, Value>;

// `s` as a JSON string literal, quotes included: ", \ and control characters escaped (\n, \t,
// \u00XX), bytes that are not valid UTF-8 replaced by U+FFFD so every line stays valid JSON.
std::string Quote(std::string_view s);

// The whole line, without the newline: {"ts":"2025-01-02T03:04:05.678Z","level":"info","msg":...}.
std::string Format(Level level, std::string_view msg, const std::vector<Field>& fields);

// Writes Format(...) + "\n" to the sink (stderr by default) in one locked write.
void Write(Level level, std::string_view msg, const std::vector<Field>& fields = {});

inline void Info(std::string_view msg, const std::vector<Field>& fields = {}) {
  Write(Level::kInfo, msg, fields);
}
inline void Warn(std::string_view msg, const std::vector<Field>& fields = {}) {
  Write(Level::kWarn, msg, fields);
}
inline void Error(std::string_view msg, const std::vector<Field>& fields = {}) {
  Write(Level::kError, msg, fields);
}

// Redirects the lines (tests); nullptr restores stderr.
void SetSinkForTesting(std::ostream* sink);

}  // namespace pg::log
