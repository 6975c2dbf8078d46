// paligemma.v1.ModelService: the registry's List/Load/Unload over gRPC.
#pragma once

#include "paligemma/v1/paligemma.grpc.pb.h"
#include "server/registry/registry.h"

namespace pg::service {

class ModelServiceImpl final : public paligemma::v1::ModelService::Service {
 public:
  explicit ModelServiceImpl(registry::ModelRegistry* registry) : registry_(registry) {}

  grpc::Status ListModels(grpc::ServerContext* context,
                          const paligemma::v1::ListModelsRequest* request,
                          paligemma::v1::ListModelsResponse* response) override;
  grpc::Status LoadModel(grpc::ServerContext* context,
                         const paligemma::v1::LoadModelRequest* request,
                         paligemma::v1::LoadModelResponse* response) override;
  grpc::Status UnloadModel(grpc::ServerContext* context,
                           const paligemma::v1::UnloadModelRequest* request,
                           paligemma::v1::UnloadModelResponse* response) override;

 private:
  registry::ModelRegistry* registry_;
};

void ToProto(const registry::ModelInfo& info, paligemma::v1::Model* out);

}  // namespace pg::service
