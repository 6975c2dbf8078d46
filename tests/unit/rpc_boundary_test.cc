// The RPC boundary: whatever a handler throws becomes INTERNAL "internal error (request id ...)"
// for the client and an error line with the exception's text for the log; a private detail is
// logged beside the client's message and never sent; the authorizer runs before the handler.
#include "server/service/rpc_boundary.h"

#include <c10/util/Exception.h>
#include <grpcpp/server_context.h>

#include <catch2/catch.hpp>
#include <sstream>
#include <stdexcept>

#include "server/common/status.h"

using pg::service::RpcMethod;
using pg::service::RpcScope;
using pg::service::ServeRpc;

namespace {

// The log lines written while `f` runs.
template <typename F>
std::string Logged(F&& f) {
  std::ostringstream sink;
  pg::log::SetSinkForTesting(&sink);
  f();
  pg::log::SetSinkForTesting(nullptr);
  return sink.str();
}

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The request id the boundary put in an INTERNAL message "internal error (request id X)".
std::string IdIn(const grpc::Status& s) {
  const std::string prefix = "internal error (request id ";
  CATCH_REQUIRE(s.error_message().rfind(prefix, 0) == 0);
  CATCH_REQUIRE(s.error_message().back() == ')');
  return s.error_message().substr(prefix.size(), s.error_message().size() - prefix.size() - 1);
}

}  // namespace

CATCH_TEST_CASE("a std::exception becomes INTERNAL with the request id, its text only logged") {
  grpc::ServerContext context;
  pg::service::ServerStats stats;
  grpc::Status status;
  const std::string log = Logged([&] {
    status = ServeRpc(&context, RpcMethod::kSegment, nullptr, &stats, [](RpcScope& scope) {
      scope.model = "tiny";
      throw std::runtime_error("vector too long at /srv/models/tiny");
      return absl::OkStatus();
    });
  });
  CATCH_CHECK(status.error_code() == grpc::StatusCode::INTERNAL);
  const std::string id = IdIn(status);
  CATCH_CHECK(id.size() == 24);
  CATCH_CHECK_FALSE(Contains(status.error_message(), "/srv"));
  CATCH_CHECK(Contains(log, "\"level\":\"error\""));
  CATCH_CHECK(Contains(log, "\"request_id\":\"" + id + "\""));
  CATCH_CHECK(Contains(log, "\"code\":\"INTERNAL\""));
  CATCH_CHECK(Contains(log, "\"model\":\"tiny\""));
  CATCH_CHECK(Contains(log, "exception: vector too long at /srv/models/tiny"));
  const auto snap = stats.Snapshot();
  CATCH_CHECK(snap.requests.count({"Segment", "tiny", "INTERNAL"}) == 1);
}

CATCH_TEST_CASE("a c10::Error and a thrown non-exception are caught the same way") {
  grpc::ServerContext context;
  grpc::Status status;
  std::string log = Logged([&] {
    status = ServeRpc(&context, RpcMethod::kLoadModel, nullptr, nullptr, [](RpcScope&) {
      TORCH_CHECK(false, "tensor shape mismatch");
      return absl::OkStatus();
    });
  });
  CATCH_CHECK(status.error_code() == grpc::StatusCode::INTERNAL);
  CATCH_CHECK(Contains(log, "\"request_id\":\"" + IdIn(status) + "\""));
  CATCH_CHECK(Contains(log, "tensor shape mismatch"));
  CATCH_CHECK_FALSE(Contains(status.error_message(), "mismatch"));

  log = Logged([&] {
    status = ServeRpc(&context, RpcMethod::kGetStats, nullptr, nullptr, [](RpcScope& scope) {
      scope.log_ok = false;
      throw 42;
      return absl::OkStatus();
    });
  });
  CATCH_CHECK(status.error_code() == grpc::StatusCode::INTERNAL);
  CATCH_CHECK(Contains(log, "\"request_id\":\"" + IdIn(status) + "\""));  // logged although log_ok
  CATCH_CHECK(Contains(log, "not a std::exception"));
}

CATCH_TEST_CASE("a private detail is logged beside the message and never sent") {
  grpc::ServerContext context;
  grpc::Status status;
  const std::string log = Logged([&] {
    status = ServeRpc(&context, RpcMethod::kSegment, nullptr, nullptr, [](RpcScope&) {
      return pg::WithPrivateDetail(absl::NotFoundError("model 'acme/x' was not found"),
                                   "GET http://hub.internal:8080/acme/x/resolve/main: 404");
    });
  });
  CATCH_CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
  CATCH_CHECK(status.error_message() == "model 'acme/x' was not found");
  CATCH_CHECK(status.error_details().empty());
  CATCH_CHECK(Contains(log, "\"error\":\"model 'acme/x' was not found\""));
  CATCH_CHECK(
      Contains(log, "\"detail\":\"GET http://hub.internal:8080/acme/x/resolve/main: 404\""));
  CATCH_CHECK(Contains(log, "\"level\":\"warn\""));
}

CATCH_TEST_CASE("the authorizer decides before the handler runs") {
  grpc::ServerContext context;  // no authorization metadata
  pg::service::ApiKeyStore keys;
  keys.Replace(*pg::service::ParseApiKeys("admin admin-key-0123456789"));
  const pg::service::Authorizer auth({true, true, false}, &keys);
  bool ran = false;
  grpc::Status status;
  const std::string log = Logged([&] {
    status = ServeRpc(&context, RpcMethod::kUnloadModel, &auth, nullptr, [&](RpcScope&) {
      ran = true;
      return absl::OkStatus();
    });
  });
  CATCH_CHECK_FALSE(ran);
  CATCH_CHECK(status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CATCH_CHECK(Contains(log, "\"method\":\"UnloadModel\""));
  CATCH_CHECK(Contains(log, "\"code\":\"UNAUTHENTICATED\""));
}

CATCH_TEST_CASE("a successful call keeps its fields and log_ok") {
  grpc::ServerContext context;
  grpc::Status status;
  std::string log = Logged([&] {
    status = ServeRpc(&context, RpcMethod::kSegment, nullptr, nullptr, [](RpcScope& scope) {
      scope.fields = {{"tokens", 7}};
      return absl::OkStatus();
    });
  });
  CATCH_CHECK(status.ok());
  CATCH_CHECK(Contains(log, "\"tokens\":7"));
  log = Logged([&] {
    status = ServeRpc(&context, RpcMethod::kGetStats, nullptr, nullptr, [](RpcScope& scope) {
      scope.log_ok = false;
      return absl::OkStatus();
    });
  });
  CATCH_CHECK(status.ok());
  CATCH_CHECK(log.empty());
}
