#include "server/service/rpc_boundary.h"

#include <chrono>
#include <exception>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/service/rpc_log.h"
#include "server/service/status_mapping.h"

namespace pg::service {

absl::Status InternalErrorFor(const std::string& request_id, const std::string& what) {
  return WithPrivateDetail(
      absl::InternalError(absl::StrCat("internal error (request id ", request_id, ")")),
      absl::StrCat("exception: ", what));
}

grpc::Status ServeRpc(grpc::ServerContext* context, RpcMethod method, const Authorizer* auth,
                      ServerStats* stats, absl::FunctionRef<absl::Status(RpcScope&)> body) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  RpcScope scope;
  absl::Status status;
  // Everything, the request id included, runs inside the try: nothing may reach gRPC's own catch,
  // which answers UNKNOWN and logs nothing.
  try {
    scope.request_id = RequestIdFrom(*context);
    if (auth != nullptr) {
      std::string_view authorization;
      const auto& md = context->client_metadata();
      if (auto it = md.find("authorization"); it != md.end()) {
        authorization = std::string_view(it->second.data(), it->second.size());
      }
      status = auth->Check(authorization, method);
    }
    if (status.ok()) status = body(scope);
  } catch (const std::exception& e) {
    status = InternalErrorFor(scope.request_id, e.what());
  } catch (...) {
    status = InternalErrorFor(scope.request_id, "an exception that is not a std::exception");
  }
  if (!status.ok()) scope.fields.clear();
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  FinishRpc(stats, scope.request_id, RpcMethodName(method), scope.model, status, ms, scope.fields,
            scope.log_ok);
  return ToGrpcStatus(status);
}

}  // namespace pg::service
