// The ONE place internal statuses become gRPC statuses, so every RPC reports errors the same way.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace pg::service {

// INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, RESOURCE_EXHAUSTED,
// DEADLINE_EXCEEDED, CANCELLED, UNAVAILABLE, UNAUTHENTICATED, ABORTED and ALREADY_EXISTS pass
// through with their message (never the status's PrivateDetail, which is for the log); OUT_OF_RANGE
// becomes INVALID_ARGUMENT (a bad request either way); everything else is INTERNAL. Messages are
// capped at 1 KB.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace pg::service
