#include "server/service/model_service.h"

#include <map>
#include <tuple>

#include "server/service/rpc_boundary.h"
#include "server/service/segment_service.h"

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

grpc::Status ModelServiceImpl::ListModels(grpc::ServerContext* context,
                                          const paligemma::v1::ListModelsRequest*,
                                          paligemma::v1::ListModelsResponse* response) {
  return ServeRpc(context, RpcMethod::kListModels, auth_, stats_, [&](RpcScope&) {
    for (const auto& info : registry_->List()) ToProto(info, response->add_models());
    response->set_default_model_id(registry_->default_model());
    return absl::OkStatus();
  });
}

namespace {

// The model label of a Load/Unload: an id the registry refuses gets none, so random ids cannot grow
// the metric series.
std::string MetricLabel(registry::ModelRegistry& registry, const std::string& id) {
  if (!registry.CheckServable(id).ok()) return "";
  return id.empty() ? registry.default_model() : id;
}

}  // namespace

grpc::Status ModelServiceImpl::LoadModel(grpc::ServerContext* context,
                                         const paligemma::v1::LoadModelRequest* request,
                                         paligemma::v1::LoadModelResponse* response) {
  return ServeRpc(context, RpcMethod::kLoadModel, auth_, stats_, [&](RpcScope& scope) {
    scope.model = MetricLabel(*registry_, request->model_id());
    auto info = registry_->Load(request->model_id(), SteadyDeadline(*context),
                                [context] { return context->IsCancelled(); });
    if (!info.ok()) return info.status();
    ToProto(*info, response->mutable_model());
    return absl::OkStatus();
  });
}

grpc::Status ModelServiceImpl::UnloadModel(grpc::ServerContext* context,
                                           const paligemma::v1::UnloadModelRequest* request,
                                           paligemma::v1::UnloadModelResponse* response) {
  return ServeRpc(context, RpcMethod::kUnloadModel, auth_, stats_, [&](RpcScope& scope) {
    scope.model = MetricLabel(*registry_, request->model_id());
    auto info = registry_->Unload(request->model_id());
    if (!info.ok()) return info.status();
    ToProto(*info, response->mutable_model());
    return absl::OkStatus();
  });
}

namespace {

void ToProto(const engine::CacheStats& c, paligemma::v1::CacheStats* out) {
  out->set_hits(static_cast<int64_t>(c.hits));
  out->set_misses(static_cast<int64_t>(c.misses));
  out->set_evictions(static_cast<int64_t>(c.evictions));
  out->set_entries(static_cast<int64_t>(c.entries));
  out->set_bytes(c.bytes);
  out->set_budget_bytes(c.budget);
}

}  // namespace

grpc::Status ModelServiceImpl::GetStats(grpc::ServerContext* context,
                                        const paligemma::v1::GetStatsRequest*,
                                        paligemma::v1::GetStatsResponse* response) {
  return ServeRpc(context, RpcMethod::kGetStats, auth_, stats_, [&](RpcScope& scope) {
    scope.log_ok = false;  // every /metrics scrape polls it
    FillStats(response);
    return absl::OkStatus();
  });
}

void ModelServiceImpl::FillStats(paligemma::v1::GetStatsResponse* response) const {
  if (stats_) {
    const StatsSnapshot snap = stats_->Snapshot();
    response->set_uptime_seconds(snap.uptime_s);
    for (const auto& [key, count] : snap.requests) {
      auto* r = response->add_requests();
      r->set_method(std::get<0>(key));
      r->set_model_id(std::get<1>(key));
      r->set_code(std::get<2>(key));
      r->set_count(static_cast<int64_t>(count));
    }
    for (const auto& [method, h] : snap.durations) {
      auto* d = response->add_request_durations();
      d->set_method(method);
      for (double b : h.bounds) d->add_bounds(b);
      for (uint64_t c : h.counts) d->add_cumulative_counts(static_cast<int64_t>(c));
      d->set_sum_seconds(h.sum);
      d->set_count(static_cast<int64_t>(h.count));
    }
    for (const auto& [stage, st] : snap.stages) {
      auto* s = response->add_stages();
      s->set_stage(stage);
      s->set_sum_ms(st.sum_ms);
      s->set_count(static_cast<int64_t>(st.count));
    }
    response->set_tokens_generated(static_cast<int64_t>(snap.tokens_generated));
  }
  // Every known model with its state and bytes; the loaded ones with their live counters.
  std::map<std::string, paligemma::v1::ModelStats*> by_id;
  for (const auto& info : registry_->List()) {
    paligemma::v1::Model m;
    ToProto(info, &m);
    auto* out = response->add_models();
    out->set_model_id(info.id);
    out->set_state(m.state());
    out->set_bytes(info.bytes);
    if (info.state == registry::ModelState::kLoading && !info.progress.phase.empty()) {
      auto* p = out->mutable_progress();
      p->set_phase(info.progress.phase);
      p->set_file(info.progress.file);
      p->set_bytes_done(info.progress.bytes_done);
      p->set_bytes_total(info.progress.bytes_total);
    }
    by_id[info.id] = out;
  }
  for (const auto& [id, model] : registry_->Loaded()) {
    auto it = by_id.find(id);
    paligemma::v1::ModelStats* out = it != by_id.end() ? it->second : response->add_models();
    if (it == by_id.end()) {
      out->set_model_id(id);
      out->set_state(paligemma::v1::Model::READY);
    }
    const engine::SchedulerStats s = model->scheduler().stats();
    out->set_queue_depth(s.queued);
    out->set_running(s.running);
    out->set_decode_steps(static_cast<int64_t>(s.decode_steps));
    out->set_decode_sequences(static_cast<int64_t>(s.decoded_tokens));
    out->set_max_batch_seen(s.max_active_seen);
    out->set_max_batch(model->scheduler().options().max_batch);
    out->set_completed(static_cast<int64_t>(s.completed));
    out->set_rejected(static_cast<int64_t>(s.rejected));
    ToProto(model->vision_cache_stats(), out->mutable_vision_cache());
    ToProto(model->response_cache_stats(), out->mutable_response_cache());
  }
}

}  // namespace pg::service
