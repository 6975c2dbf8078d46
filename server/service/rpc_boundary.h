// The one way an RPC handler runs: the caller is authorized once at entry, the handler works in
// absl::Status (so a private detail survives to the log), any exception it lets escape becomes
// INTERNAL "internal error (request id ...)" with the exception's text in the log only, and every
// answer is counted and logged under the request id by FinishRpc.
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "server/common/log.h"
#include "server/service/auth.h"
#include "server/service/stats.h"

namespace pg::service {

// What a handler tells the boundary about its request, for the log line and the counters.
struct RpcScope {
  std::string request_id;
  std::string model;
  std::vector<log::Field> fields;  // extra fields for a successful call's log line
  bool log_ok = true;              // false: no line for a successful call (polled methods)
};

// Runs `body` for `method`: `auth` (may be null: everything allowed) decides first from the
// request's `authorization` metadata; `stats` (may be null) counts the answer.
grpc::Status ServeRpc(grpc::ServerContext* context, RpcMethod method, const Authorizer* auth,
                      ServerStats* stats, absl::FunctionRef<absl::Status(RpcScope&)> body);

// The client's message for a failure the server did not expect (an exception escaped a handler).
absl::Status InternalErrorFor(const std::string& request_id, const std::string& what);

}  // namespace pg::service
