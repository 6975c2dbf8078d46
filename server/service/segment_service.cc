#include "server/service/segment_service.h"

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/service/rpc_boundary.h"

namespace pg::service {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

void FillResponse(const engine::SegmentResult& r, paligemma::v1::SegmentResponse* out) {
  out->set_image(r.image_png);
  out->set_text(r.text);
  out->set_width(r.original_width);
  out->set_height(r.original_height);
  for (const auto& m : r.masks) {
    auto* o = out->add_masks();
    o->set_mask(m.mask_png);
    for (int v : m.coordinates) o->add_coordinates(v);
    o->set_label(m.label);
    for (int v : m.box) o->add_box(v);
    o->set_full_mask(m.full_mask_png);
    o->set_has_mask(m.has_mask);
  }
  auto* t = out->mutable_timings();
  t->set_preprocess_ms(r.timings.preprocess_ms);
  t->set_vision_ms(r.timings.vision_ms);
  t->set_prefill_ms(r.timings.prefill_ms);
  t->set_decode_ms(r.timings.decode_ms);
  t->set_masks_ms(r.timings.masks_ms);
}

}  // namespace

Clock::time_point SteadyDeadline(const grpc::ServerContext& context) {
  const auto system_deadline = context.deadline();
  const auto system_now = std::chrono::system_clock::now();
  if (system_deadline - system_now > std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(system_deadline - system_now);
}

grpc::Status SegmentServiceImpl::Segment(grpc::ServerContext* context,
                                         const paligemma::v1::SegmentRequest* request,
                                         paligemma::v1::SegmentResponse* response) {
  return ServeRpc(context, RpcMethod::kSegment, auth_, stats_,
                  [&](RpcScope& scope) -> absl::Status {
                    Trace trace{&scope.model};
                    RETURN_IF_ERROR(Run(context, request, response, &trace));
                    const auto& t = response->timings();
                    if (stats_) {
                      stats_->AddTokens(static_cast<uint64_t>(trace.tokens));
                      stats_->RecordStage("queue", t.queue_ms());
                      if (!request->image_url().empty()) stats_->RecordStage("fetch", t.fetch_ms());
                      stats_->RecordStage("preprocess", t.preprocess_ms());
                      stats_->RecordStage("vision", t.vision_ms());
                      stats_->RecordStage("prefill", t.prefill_ms());
                      stats_->RecordStage("decode", t.decode_ms());
                      stats_->RecordStage("masks", t.masks_ms());
                    }
                    scope.fields = {{"tokens", trace.tokens},
                                    {"objects", response->masks_size()},
                                    {"queue_ms", t.queue_ms()},
                                    {"fetch_ms", t.fetch_ms()},
                                    {"preprocess_ms", t.preprocess_ms()},
                                    {"vision_ms", t.vision_ms()},
                                    {"prefill_ms", t.prefill_ms()},
                                    {"decode_ms", t.decode_ms()},
                                    {"masks_ms", t.masks_ms()}};
                    return absl::OkStatus();
                  });
}

absl::Status SegmentServiceImpl::Run(grpc::ServerContext* context,
                                     const paligemma::v1::SegmentRequest* request,
                                     paligemma::v1::SegmentResponse* response, Trace* trace) {
  const auto t0 = Clock::now();
  const auto deadline = SteadyDeadline(*context);
  const std::function<bool()> cancelled = [context] { return context->IsCancelled(); };

  absl::StatusOr<ParsedSegmentRequest> parsed = ParseSegmentRequest(*request, limits_);
  if (!parsed.ok()) return parsed.status();
  *trace->model = parsed->model_id.empty() ? registry_->default_model() : parsed->model_id;
  if (absl::Status s = registry_->CheckServable(parsed->model_id); !s.ok()) {
    trace->model->clear();  // a refused id gets no metric label
    return s;
  }

  engine::SegmentRequest engine_request;
  engine_request.prompt = std::move(parsed->prompt);
  engine_request.options = parsed->options;
  const auto tq = Clock::now();
  auto model = registry_->Get(parsed->model_id, deadline, cancelled);
  if (!model.ok()) return model.status();
  auto ticket = admission_->Enter(deadline, cancelled);
  if (!ticket.ok()) return ticket.status();
  const double queue_ms = MsSince(tq);

  // The fetch runs under the admission ticket: --max_concurrent bounds downloads like compute, and
  // a request refused as busy has not fetched a byte.
  double fetch_ms = 0;
  if (!parsed->image_url.empty()) {
    const auto tf = Clock::now();
    absl::StatusOr<std::string> body = FetchUrl(parsed->image_url, fetch_, deadline, cancelled);
    if (!body.ok()) return body.status();
    engine_request.image_bytes = std::move(*body);
    fetch_ms = MsSince(tf);
  } else {
    engine_request.image_bytes = std::move(parsed->image_data);
  }

  // Polled between decode steps: a client that gave up stops costing compute within one token.
  engine_request.options.should_stop = [context, deadline] {
    return context->IsCancelled() || Clock::now() >= deadline;
  };
  engine_request.options.deadline = deadline;
  absl::StatusOr<engine::SegmentResult> result = (*model)->Segment(engine_request);
  if (!result.ok()) return result.status();
  trace->tokens = static_cast<int64_t>(result->generated_token_ids.size());
  if (result->stopped_early) {
    const std::string progress =
        absl::StrCat(" after ", result->generated_token_ids.size(), " generated tokens");
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError("deadline exceeded" + progress);
    }
    return absl::CancelledError("request cancelled" + progress);
  }
  FillResponse(*result, response);
  response->set_model_id(parsed->model_id.empty() ? registry_->default_model() : parsed->model_id);
  auto* t = response->mutable_timings();
  t->set_queue_ms(queue_ms);
  t->set_fetch_ms(fetch_ms);
  t->set_total_ms(MsSince(t0));
  return absl::OkStatus();
}

}  // namespace pg::service
