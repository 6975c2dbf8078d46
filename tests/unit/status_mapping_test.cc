// The one internal-status -> gRPC-code mapping.
#include "server/service/status_mapping.h"

#include <catch2/catch.hpp>

#include "server/common/status.h"

using pg::service::ToGrpcStatus;

CATCH_TEST_CASE("each internal code maps to its gRPC code with the message") {
  const std::pair<absl::Status, grpc::StatusCode> cases[] = {
      {absl::InvalidArgumentError("a"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::OutOfRangeError("a"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::NotFoundError("a"), grpc::StatusCode::NOT_FOUND},
      {absl::PermissionDeniedError("a"), grpc::StatusCode::PERMISSION_DENIED},
      {absl::FailedPreconditionError("a"), grpc::StatusCode::FAILED_PRECONDITION},
      {absl::ResourceExhaustedError("a"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::DeadlineExceededError("a"), grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::CancelledError("a"), grpc::StatusCode::CANCELLED},
      {absl::UnavailableError("a"), grpc::StatusCode::UNAVAILABLE},
      {absl::UnauthenticatedError("a"), grpc::StatusCode::UNAUTHENTICATED},
      {absl::AbortedError("a"), grpc::StatusCode::ABORTED},
      {absl::AlreadyExistsError("a"), grpc::StatusCode::ALREADY_EXISTS},
      {absl::InternalError("a"), grpc::StatusCode::INTERNAL},
      {absl::UnknownError("a"), grpc::StatusCode::INTERNAL},
      {absl::DataLossError("a"), grpc::StatusCode::INTERNAL},
      {absl::UnimplementedError("a"), grpc::StatusCode::INTERNAL},
  };
  for (const auto& [status, code] : cases) {
    CATCH_INFO(status.ToString());
    const grpc::Status g = ToGrpcStatus(status);
    CATCH_CHECK(g.error_code() == code);
    CATCH_CHECK(g.error_message() == "a");
  }
  CATCH_CHECK(ToGrpcStatus(absl::OkStatus()).ok());
}

CATCH_TEST_CASE("long messages are capped") {
  const grpc::Status g = ToGrpcStatus(absl::InternalError(std::string(5000, 'x')));
  CATCH_CHECK(g.error_message().size() == 1024);
}

CATCH_TEST_CASE("the private detail is never sent") {
  const absl::Status s = pg::WithPrivateDetail(absl::NotFoundError("model 'x' was not found"),
                                               "/srv/models/x: ENOENT");
  const grpc::Status g = ToGrpcStatus(s);
  CATCH_CHECK(g.error_message() == "model 'x' was not found");
  CATCH_CHECK(g.error_details().empty());
  CATCH_CHECK(pg::PrivateDetail(s) == "/srv/models/x: ENOENT");
}
