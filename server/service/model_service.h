// paligemma.v1.ModelService: the registry's List/Load/Unload over gRPC, and GetStats (the server's
// counters in `stats` plus each model's live state).
#pragma once

#include "paligemma/v1/paligemma.grpc.pb.h"
#include "server/registry/registry.h"
#include "server/service/auth.h"
#include "server/service/stats.h"

namespace pg::service {

class ModelServiceImpl final : public paligemma::v1::ModelService::Service {
 public:
  explicit ModelServiceImpl(registry::ModelRegistry* registry, ServerStats* stats = nullptr)
      : registry_(registry), stats_(stats) {}

  // Who may call what (null: anyone); checked once at the entry of each RPC.
  void set_authorizer(const Authorizer* auth) { auth_ = auth; }

  grpc::Status ListModels(grpc::ServerContext* context,
                          const paligemma::v1::ListModelsRequest* request,
                          paligemma::v1::ListModelsResponse* response) override;
  grpc::Status LoadModel(grpc::ServerContext* context,
                         const paligemma::v1::LoadModelRequest* request,
                         paligemma::v1::LoadModelResponse* response) override;
  grpc::Status UnloadModel(grpc::ServerContext* context,
                           const paligemma::v1::UnloadModelRequest* request,
                           paligemma::v1::UnloadModelResponse* response) override;
  grpc::Status GetStats(grpc::ServerContext* context, const paligemma::v1::GetStatsRequest* request,
                        paligemma::v1::GetStatsResponse* response) override;

 private:
  void FillStats(paligemma::v1::GetStatsResponse* response) const;

  registry::ModelRegistry* registry_;
  ServerStats* stats_;
  const Authorizer* auth_ = nullptr;
};

void ToProto(const registry::ModelInfo& info, paligemma::v1::Model* out);

}  // namespace pg::service
