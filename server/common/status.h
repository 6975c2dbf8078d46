// Status propagation in the style of Triton/TF Serving: one Status type (absl::Status) everywhere,
// early return on error so call sites stay linear.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

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
