// Status propagation in the style of Triton/TF Serving: one Status type (absl::Status) everywhere,
// early return on error so call sites stay linear.
#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

#define PG_STATUS_CONCAT_INNER(a, b) a##b
#define PG_STATUS_CONCAT(a, b) PG_STATUS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status pg_status_ = (expr);      \
    if (!pg_status_.ok()) return pg_status_; \
  } while (false)

#define ASSIGN_OR_RETURN(lhs, expr) \
  PG_ASSIGN_OR_RETURN_IMPL(PG_STATUS_CONCAT(pg_statusor_, __LINE__), lhs, expr)

#define PG_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                             \
  if (!statusor.ok()) return statusor.status();       \
  lhs = std::move(statusor).value()

namespace pg {

// A status's message is what the client sees: it says what is wrong without server paths, internal
// URLs or addresses. The full detail (which file, which URL, which address) travels beside it for
// the server's log only: the RPC boundary logs PrivateDetail() under the request id and never sends
// it.
inline constexpr absl::string_view kPrivateDetailPayload = "type.paligemma-serve/private-detail";

inline absl::Status WithPrivateDetail(absl::Status status, absl::string_view detail) {
  if (!status.ok() && !detail.empty()) {
    status.SetPayload(kPrivateDetailPayload, absl::Cord(detail));
  }
  return status;
}

// The detail attached by WithPrivateDetail, or "" when there is none.
inline std::string PrivateDetail(const absl::Status& status) {
  auto payload = status.GetPayload(kPrivateDetailPayload);
  return payload ? std::string(*payload) : std::string();
}

}  // namespace pg
