#include "server/service/rpc_log.h"

#include <random>

#include "server/common/status.h"
#include "server/service/status_mapping.h"

namespace pg::service {

std::string RequestIdFrom(const grpc::ServerContext& context) {
  const auto& md = context.client_metadata();
  if (auto it = md.find("x-request-id"); it != md.end()) {
    const std::string_view id(it->second.data(), it->second.size());
    bool ok = !id.empty() && id.size() <= 128;
    for (char c : id) ok = ok && c >= 0x21 && c <= 0x7e;
    if (ok) return std::string(id);
  }
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(24, '0');
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 24; ++i) {
    uint64_t& w = i < 16 ? a : b;
    id[i] = kHex[w & 15];
    w >>= 4;
  }
  return id;
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

void FinishRpc(ServerStats* stats, const std::string& request_id, std::string_view method,
               std::string_view model, const absl::Status& status, double duration_ms,
               const std::vector<log::Field>& fields, bool log_ok) {
  const grpc::StatusCode c = ToGrpcStatus(status).error_code();
  const char* code = CodeName(c);
  if (stats) stats->RecordRequest(method, model, code, duration_ms);
  if (status.ok() && !log_ok) return;
  std::vector<log::Field> all = {{"request_id", request_id},
                                 {"method", method},
                                 {"model", model},
                                 {"code", code},
                                 {"duration_ms", duration_ms}};
  const std::string detail = PrivateDetail(status);
  if (!status.ok()) all.emplace_back("error", std::string(status.message()));
  if (!detail.empty()) all.emplace_back("detail", detail);
  all.insert(all.end(), fields.begin(), fields.end());
  // Client errors are warnings; the server's own failures (INTERNAL, UNKNOWN, ...) errors.
  const log::Level level = status.ok() ? log::Level::kInfo
                           : c == grpc::StatusCode::INTERNAL || c == grpc::StatusCode::UNKNOWN ||
                                   c == grpc::StatusCode::DATA_LOSS
                               ? log::Level::kError
                               : log::Level::kWarn;
  log::Write(level, "request", all);
}

}  // namespace pg::service
