#include "server/service/model_service.h"

#include "server/service/segment_service.h"
#include "server/service/status_mapping.h"

namespace pg::service {

void ToProto(const registry::ModelInfo& info, paligemma::v1::Model* out) {
  using paligemma::v1::Model;
  out->set_id(info.id);
  switch (info.state) {
    case registry::ModelState::kAvailable:
      out->set_state(Model::AVAILABLE);
      break;
    case registry::ModelState::kLoading:
      out->set_state(Model::LOADING);
      break;
    case registry::ModelState::kReady:
      out->set_state(Model::READY);
      break;
    case registry::ModelState::kFailed:
      out->set_state(Model::FAILED);
      break;
  }
  out->set_error(info.error);
  out->set_source(info.source);
  out->set_bytes(info.bytes);
  out->set_device(info.device);
  out->set_dtype(info.dtype);
  out->set_load_ms(info.load_ms);
}

grpc::Status ModelServiceImpl::ListModels(grpc::ServerContext*,
                                          const paligemma::v1::ListModelsRequest*,
                                          paligemma::v1::ListModelsResponse* response) {
  for (const auto& info : registry_->List()) ToProto(info, response->add_models());
  response->set_default_model_id(registry_->default_model());
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::LoadModel(grpc::ServerContext* context,
                                         const paligemma::v1::LoadModelRequest* request,
                                         paligemma::v1::LoadModelResponse* response) {
  auto info = registry_->Load(request->model_id(), SteadyDeadline(*context),
                              [context] { return context->IsCancelled(); });
  if (!info.ok()) return ToGrpcStatus(info.status());
  ToProto(*info, response->mutable_model());
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::UnloadModel(grpc::ServerContext*,
                                           const paligemma::v1::UnloadModelRequest* request,
                                           paligemma::v1::UnloadModelResponse* response) {
  auto info = registry_->Unload(request->model_id());
  if (!info.ok()) return ToGrpcStatus(info.status());
  ToProto(*info, response->mutable_model());
  return grpc::Status::OK;
}

}  // namespace pg::service
