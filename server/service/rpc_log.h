// Per-RPC observability: the request id (the gateway's x-request-id metadata, or a new one), the
// counters in ServerStats and one JSON log line per answered request.
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "server/common/log.h"
#include "server/service/stats.h"

namespace pg::service {

// The request's x-request-id metadata when usable (printable ASCII, at most 128 bytes), otherwise a
// new random id.
std::string RequestIdFrom(const grpc::ServerContext& context);

// "OK", "INVALID_ARGUMENT", ... (the names Prometheus labels and the logs use).
const char* CodeName(grpc::StatusCode code);

// Counts one answered RPC in `stats` (may be null) and logs it: request_id, method, model, the gRPC
// code the client gets, duration_ms, the error message the client sees and, beside it, the
// status's PrivateDetail (server paths, internal URLs: for the log only, never sent), plus
// `fields`. `log_ok` false skips the line for successful calls (GetStats, polled by every /metrics
// scrape).
void FinishRpc(ServerStats* stats, const std::string& request_id, std::string_view method,
               std::string_view model, const absl::Status& status, double duration_ms,
               const std::vector<log::Field>& fields = {}, bool log_ok = true);

}  // namespace pg::service
