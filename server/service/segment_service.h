// paligemma.v1.SegmentService: validate at the edge, get the model from the registry, wait for an
// execution slot, fetch image_url under it, run the engine with the client's deadline and
// cancellation, translate back.
#pragma once

#include "paligemma/v1/paligemma.grpc.pb.h"
#include "server/registry/registry.h"
#include "server/service/admission.h"
#include "server/service/auth.h"
#include "server/service/request_validation.h"
#include "server/service/stats.h"
#include "server/service/url_fetch.h"

namespace pg::service {

class SegmentServiceImpl final : public paligemma::v1::SegmentService::Service {
 public:
  // `stats` (may be null) counts every answered request.
  SegmentServiceImpl(registry::ModelRegistry* registry, Admission* admission, RequestLimits limits,
                     FetchOptions fetch, ServerStats* stats = nullptr)
      : registry_(registry),
        admission_(admission),
        limits_(limits),
        fetch_(std::move(fetch)),
        stats_(stats) {}

  // Who may call (null: anyone); checked once at the entry of each RPC.
  void set_authorizer(const Authorizer* auth) { auth_ = auth; }

  grpc::Status Segment(grpc::ServerContext* context, const paligemma::v1::SegmentRequest* request,
                       paligemma::v1::SegmentResponse* response) override;

 private:
  // What Segment() logs and counts about a request besides its status.
  struct Trace {
    std::string* model;
    int64_t tokens = 0;
  };
  absl::Status Run(grpc::ServerContext* context, const paligemma::v1::SegmentRequest* request,
                   paligemma::v1::SegmentResponse* response, Trace* trace);

  registry::ModelRegistry* registry_;
  Admission* admission_;
  const RequestLimits limits_;
  const FetchOptions fetch_;
  ServerStats* stats_;
  const Authorizer* auth_ = nullptr;
};

// The client's deadline on the steady clock (far future when it set none).
std::chrono::steady_clock::time_point SteadyDeadline(const grpc::ServerContext& context);

}  // namespace pg::service
