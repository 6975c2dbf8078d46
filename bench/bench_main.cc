// paligemma-bench: latency/throughput of the segmentation pipeline in-process, through gRPC and
// through the REST gateway, plus the ratios of issue 6 (prefill FLOP/s vs in-run matmul FLOP/s,
// decode time per token vs the memory-bandwidth bound, load time vs read time, RSS vs weight
// bytes). Prints a table and writes JSON. bench/run.sh starts the server and gateway and drives it.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "paligemma/v1/paligemma.grpc.pb.h"
#include "server/engine/segmenter.h"
#include "server/image/image.h"

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
namespace fs = std::filesystem;

double Sec(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

torch::Device g_device(torch::kCPU);

void Sync() {
  if (g_device.is_cuda()) torch::cuda::synchronize();
}

struct Args {
  std::string bundle, image, prompt = "segment cat", grpc, gateway, json_out, dtype = "float32";
  std::string label = "tiny";
  std::string device = "cpu";
  std::vector<int> concurrency = {1, 4, 8, 16};
  int requests = 16;  // per concurrency level (at least the concurrency)
  int max_new_tokens = 32;
  int threads = 0;
  int max_batch = 16;
  int64_t max_context = 0;
  bool micro = true;
  bool freeze = false;
  int decode_tokens = 0;  // 0: max_new_tokens; tokens for the batch-1 decode measurement
};

long RssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;
  }
  return 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(idx)), hi = static_cast<size_t>(std::ceil(idx));
  return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

struct One {
  bool ok = false;
  std::string error;
  int tokens = 0;
  // The server's own time for the request (its timings.total_ms), when it says: latency minus this
  // is what gRPC / the gateway add, measured per request, so the compute's noise cancels out.
  double server_ms = -1;
  double client_ms =
      0;  // the bench's own work inside the timed call (parsing the answer): not overhead
};

using RunFn = std::function<One()>;

json RunLevels(const std::string& mode, const Args& a, const RunFn& run) {
  json levels = json::array();
  run();  // warm-up (first TorchScript runs profile and optimise; connections open)
  for (int c : a.concurrency) {
    const int total = std::max(a.requests, c);
    std::atomic<int> next{0};
    std::mutex mu;
    std::vector<double> latencies, overheads;
    long tokens = 0;
    int errors = 0;
    std::string first_error;
    const auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int i = 0; i < c; ++i) {
      threads.emplace_back([&] {
        while (next.fetch_add(1) < total) {
          const auto s = Clock::now();
          One r = run();
          const double ms = Sec(s, Clock::now()) * 1e3;
          std::lock_guard<std::mutex> lock(mu);
          if (r.ok) {
            latencies.push_back(ms);
            if (r.server_ms >= 0) overheads.push_back(ms - r.server_ms - r.client_ms);
            tokens += r.tokens;
          } else {
            ++errors;
            if (first_error.empty()) first_error = r.error;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    const double wall = Sec(t0, Clock::now());
    json l = {{"mode", mode},
              {"concurrency", c},
              {"requests", total},
              {"errors", errors},
              {"p50_ms", Percentile(latencies, 0.5)},
              {"p95_ms", Percentile(latencies, 0.95)},
              {"tokens", tokens},
              {"wall_s", wall},
              {"tokens_per_s", tokens / wall},
              {"requests_per_s", latencies.size() / wall}};
    if (!overheads.empty()) {
      l["overhead_p50_ms"] = Percentile(overheads, 0.5);
      l["overhead_p95_ms"] = Percentile(overheads, 0.95);
    }
    if (!first_error.empty()) l["first_error"] = first_error;
    std::cerr << "bench: " << l.dump() << "\n";
    levels.push_back(l);
  }
  return levels;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t CurlWrite(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

// Matmul FLOP/s of the language model's prefill GEMM shapes, in the model dtype, best of 3.
json MatmulRate(const pg::model::Manifest& m, int64_t rows, torch::ScalarType dtype,
                int64_t intermediate) {
  c10::InferenceMode guard;
  const int64_t h = m.hidden_size, qd = m.num_heads * m.head_dim, kvd = m.num_kv_heads * m.head_dim;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {h, qd},           {h, kvd},          {h, kvd},         {qd, h},
      {h, intermediate}, {h, intermediate}, {intermediate, h}};
  auto opts = torch::TensorOptions().dtype(dtype).device(g_device);
  std::vector<torch::Tensor> ws;
  for (auto [in, out] : shapes) ws.push_back(torch::randn({out, in}, opts) * 0.02);
  auto x_in = torch::randn({rows, h}, opts);
  auto x_int = torch::randn({rows, intermediate}, opts);
  auto x_q = torch::randn({rows, qd}, opts);
  double best = 1e30, flops = 0;
  for (size_t i = 0; i < shapes.size(); ++i)
    flops += 2.0 * rows * shapes[i].first * shapes[i].second;
  for (int rep = 0; rep < 4; ++rep) {
    Sync();
    const auto t0 = Clock::now();
    for (size_t i = 0; i < shapes.size(); ++i) {
      const auto& x = shapes[i].first == h ? x_in : (shapes[i].first == qd ? x_q : x_int);
      auto y = at::linear(x, ws[i]);
    }
    Sync();
    best = std::min(best, Sec(t0, Clock::now()));
  }
  return {{"rows", rows}, {"flop", flops}, {"seconds", best}, {"flop_per_s", flops / best}};
}

// Copy bandwidth: bytes read + written by a large tensor copy, best of 3.
double CopyBandwidth() {
  c10::InferenceMode guard;
  auto src = torch::ones({int64_t{256} << 20}, torch::TensorOptions().device(g_device));  // 1 GiB
  auto dst = torch::empty_like(src);
  double best = 1e30;
  for (int rep = 0; rep < 4; ++rep) {
    Sync();
    const auto t0 = Clock::now();
    dst.copy_(src);
    Sync();
    best = std::min(best, Sec(t0, Clock::now()));
  }
  return 2.0 * src.numel() * 4 / best;
}

}  // namespace

int main(int argc, char** argv) {
  pg::engine::EnsurePassiveOpenMp(argv);
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--bundle")
      a.bundle = v;
    else if (k == "--image")
      a.image = v;
    else if (k == "--prompt")
      a.prompt = v;
    else if (k == "--grpc")
      a.grpc = v;
    else if (k == "--gateway")
      a.gateway = v;
    else if (k == "--json")
      a.json_out = v;
    else if (k == "--dtype")
      a.dtype = v;
    else if (k == "--device")
      a.device = v;
    else if (k == "--freeze")
      a.freeze = v != "0";
    else if (k == "--label")
      a.label = v;
    else if (k == "--requests")
      a.requests = std::stoi(v);
    else if (k == "--max_new_tokens")
      a.max_new_tokens = std::stoi(v);
    else if (k == "--threads")
      a.threads = std::stoi(v);
    else if (k == "--max_batch")
      a.max_batch = std::stoi(v);
    else if (k == "--max_context")
      a.max_context = std::stoll(v);
    else if (k == "--micro")
      a.micro = v != "0";
    else if (k == "--concurrency") {
      a.concurrency.clear();
      for (auto s : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        a.concurrency.push_back(std::stoi(std::string(s)));
      }
    } else {
      std::cerr << "paligemma-bench: unknown flag " << k << "\n";
      return 2;
    }
  }
  if (a.bundle.empty() || a.image.empty()) {
    std::cerr
        << "usage: paligemma-bench --bundle DIR --image FILE [--grpc HOST:PORT] [--gateway URL]\n"
           "  [--json OUT] [--concurrency 1,4,8,16] [--requests N] [--max_new_tokens N]\n"
           "  [--dtype float32|bfloat16] [--freeze 0|1] [--threads N] [--max_batch N] [--micro "
           "0|1]\n";
    return 2;
  }
  const std::string image = ReadFile(a.image);
  json report = {{"label", a.label},   {"bundle", a.bundle},
                 {"dtype", a.dtype},   {"max_new_tokens", a.max_new_tokens},
                 {"prompt", a.prompt}, {"cores", std::thread::hardware_concurrency()}};
  json levels = json::array();

  // --- Load: bundle read time (bytes through the page cache) vs engine load time; RSS.
  int64_t bundle_bytes = 0;
  double read_s = 0;
  {
    const auto t0 = Clock::now();
    std::vector<char> buf(8 << 20);
    for (const auto& f : std::filesystem::directory_iterator(a.bundle)) {
      if (!f.is_regular_file()) continue;
      std::ifstream in(f.path(), std::ios::binary);
      while (in.read(buf.data(), buf.size()) || in.gcount() > 0) bundle_bytes += in.gcount();
    }
    read_s = Sec(t0, Clock::now());
  }
  const long rss0 = RssBytes();
  pg::engine::EngineOptions eo;
  eo.load.dtype = a.dtype;
  eo.load.device = a.device;
  eo.load.freeze = a.freeze;
  g_device = torch::Device(a.device);
  eo.threads = a.threads;
  eo.max_batch = a.max_batch;
  eo.max_queue = 1024;
  eo.vision_cache_bytes = 0;  // every request does the full work, in every mode
  eo.max_new_tokens_limit = a.max_new_tokens;
  eo.max_context = a.max_context;
  const auto tl = Clock::now();
  auto engine = pg::engine::Segmenter::Create(a.bundle, eo);
  const double load_s = Sec(tl, Clock::now());
  if (!engine.ok()) {
    std::cerr << "paligemma-bench: " << engine.status().message() << "\n";
    return 1;
  }
  const long rss1 = RssBytes();
  const auto& model = (*engine)->model();
  const auto& m = model.manifest();
  const int64_t weight_bytes = model.parameter_bytes();
  const int64_t kv_bytes = (*engine)->scheduler().cache_bytes();
  report["load"] = {
      {"bundle_bytes", bundle_bytes},
      {"read_s", read_s},
      {"load_s", load_s},
      {"load_over_read", load_s / read_s},
      {"deserialize_s", model.load_timings().deserialize_ms / 1e3},
      {"convert_s", model.load_timings().convert_ms / 1e3},
      {"freeze_s", model.load_timings().freeze_ms / 1e3},
      {"mapped_bytes", model.load_timings().mapped_bytes},
      {"copied_bytes", model.load_timings().copied_bytes},
      {"weight_bytes", weight_bytes},
      {"kv_cache_bytes", kv_bytes},
      {"rss_after_load", rss1},
      {"rss_growth", rss1 - rss0},
      {"rss_over_weights", static_cast<double>(rss1) / weight_bytes},
      {"rss_minus_kv_over_weights", static_cast<double>(rss1 - kv_bytes) / weight_bytes}};
  std::cerr << "bench: load " << report["load"].dump() << "\n";

  pg::engine::SegmentRequest req;
  req.image_bytes = image;
  req.prompt = a.prompt;
  req.options.max_new_tokens = a.max_new_tokens;
  req.options.suppress_eos = true;  // fixed-length answers: throughput comparable across modes
  auto engine_run = [&]() -> One {
    auto r = (*engine)->Segment(req);
    One o;
    o.ok = r.ok();
    if (!r.ok())
      o.error = std::string(r.status().message());
    else
      o.tokens = static_cast<int>(r->generated_token_ids.size());
    return o;
  };

  // --- Phase timings and the compute/bandwidth ratios, through the model's slot API directly: one
  // vision pass, one prefill (timed twice: the first run also profiles the TorchScript graph), then
  // decode steps at batch 1 and at batch 8 (slot 0's cache copied to the other slots), so a 3B run
  // stays short.
  if (a.micro) {
    const int steps = std::max(4, a.decode_tokens > 0 ? a.decode_tokens : a.max_new_tokens);
    auto first = (*engine)->Segment(req);  // warm-up, and the prompt's token ids
    if (!first.ok()) {
      std::cerr << "paligemma-bench: " << first.status().message() << "\n";
      return 1;
    }
    const auto image = pg::image::DecodeImage(req.image_bytes);
    const auto resized = pg::image::ResizeBicubic(*image, m.image_size, m.image_size);
    const auto chw = pg::image::Normalize(resized, m.mean, m.std, m.rescale_factor);
    auto tv = Clock::now();
    auto features = model.EncodeImage(chw);
    Sync();
    const double vision_ms = Sec(tv, Clock::now()) * 1e3;
    const pg::model::PromptInput prompt{(*features)[0], first->prompt_token_ids};
    const int64_t s = m.num_image_tokens + static_cast<int64_t>(first->prompt_token_ids.size());
    const int batch = 8;
    auto cache = model.AllocateCache(batch, s + steps + 2);
    double prefill_ms = 1e30;
    int32_t token = 0;
    for (int rep = 0; rep < 2; ++rep) {
      auto tp = Clock::now();
      auto t = model.PrefillSlot(prompt, 0, *cache, true);
      Sync();
      prefill_ms = std::min(prefill_ms, Sec(tp, Clock::now()) * 1e3);
      token = *t;
    }
    {
      c10::InferenceMode guard;
      for (int j = 1; j < batch; ++j) {
        cache->k.select(1, j).copy_(cache->k.select(1, 0));
        cache->v.select(1, j).copy_(cache->v.select(1, 0));
      }
    }
    auto decode_rate = [&](int b) {
      std::vector<int64_t> ids(b, token), pos(b, s), slots(b);
      for (int j = 0; j < b; ++j) slots[j] = j;
      std::vector<bool> suppress(b, true);
      (void)model.DecodeStep(ids, pos, slots, suppress, *cache);  // warm-up (profiling runs)
      Sync();
      const auto t0 = Clock::now();
      for (int i = 0; i < steps; ++i) {
        for (auto& p : pos) p = s + i;
        auto next = model.DecodeStep(ids, pos, slots, suppress, *cache);
        for (int j = 0; j < b; ++j) ids[j] = (*next)[j];
      }
      Sync();
      return Sec(t0, Clock::now()) / steps;  // seconds per step
    };
    const double step1 = decode_rate(1);
    const double step8 = decode_rate(batch);
    // Prefill FLOPs (language model over the S = N + T prefix) counted from the architecture.
    const int64_t h = m.hidden_size, qd = m.num_heads * m.head_dim,
                  kvd = m.num_kv_heads * m.head_dim;
    const int64_t inter = model.intermediate_size(), lang_bytes = model.language_bytes();
    const double per_layer = 2.0 * s * (h * qd + 2 * h * kvd + qd * h + 3 * h * inter) +
                             2.0 * 2.0 * s * s * qd;                                // + QK^T and PV
    const double prefill_flop = per_layer * m.num_layers + 2.0 * h * m.vocab_size;  // + 1-row head
    const json mm = MatmulRate(m, s, model.dtype(), inter);
    const double prefill_rate = prefill_flop / (prefill_ms / 1e3);
    // Decode reads every language weight once per step (the tied head included).
    const double bw = CopyBandwidth();
    const double bound_ms = lang_bytes / bw * 1e3;
    report["phases"] = {{"prefix_positions", s},
                        {"vision_ms", vision_ms},
                        {"prefill_ms", prefill_ms},
                        {"decode_steps", steps},
                        {"decode_ms_per_step_b1", step1 * 1e3},
                        {"decode_ms_per_step_b8", step8 * 1e3}};
    report["prefill"] = {{"flop", prefill_flop},
                         {"flop_per_s", prefill_rate},
                         {"matmul", mm},
                         {"ratio_to_matmul", prefill_rate / mm["flop_per_s"].get<double>()}};
    report["decode"] = {{"ms_per_token", step1 * 1e3},
                        {"weight_bytes_per_token", lang_bytes},
                        {"copy_bandwidth_bytes_per_s", bw},
                        {"bandwidth_bound_ms", bound_ms},
                        {"ratio_to_bound", step1 * 1e3 / bound_ms},
                        {"tokens_per_s_b1", 1.0 / step1},
                        {"tokens_per_s_b8", batch / step8},
                        {"b8_over_b1", (batch / step8) * step1}};
    std::cerr << "bench: phases " << report["phases"].dump() << "\nbench: prefill "
              << report["prefill"].dump() << "\nbench: decode " << report["decode"].dump() << "\n";
  }

  if (!a.concurrency.empty()) {
    for (auto& l : RunLevels("engine", a, engine_run)) levels.push_back(l);
  }

  if (!a.grpc.empty()) {
    auto channel = grpc::CreateChannel(a.grpc, grpc::InsecureChannelCredentials());
    auto stub = paligemma::v1::SegmentService::NewStub(channel);
    paligemma::v1::SegmentRequest pr;
    pr.set_prompt(a.prompt);
    pr.set_image_data(image);
    pr.set_max_new_tokens(a.max_new_tokens);
    auto grpc_run = [&]() -> One {
      grpc::ClientContext ctx;
      paligemma::v1::SegmentResponse resp;
      grpc::Status st = stub->Segment(&ctx, pr, &resp);
      One o;
      o.ok = st.ok();
      if (!st.ok()) {
        o.error = st.error_message();
      } else {
        o.tokens = a.max_new_tokens;  // the answer's token count is not in the response
        o.server_ms = resp.timings().total_ms();
      }
      return o;
    };
    for (auto& l : RunLevels("grpc", a, grpc_run)) levels.push_back(l);
  }
  if (!a.gateway.empty()) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const std::string body = json{
        {"prompt", a.prompt},
        {"image_data", absl::Base64Escape(image)},
        {"max_new_tokens",
         a.max_new_tokens}}.dump();
    const std::string url = a.gateway + "/v1/segment";
    // One connection per client thread, kept alive (as the gRPC client keeps its channel), and no
    // "Expect: 100-continue" round trip before the body (libcurl adds it to POSTs over 1 KB): the
    // overhead measured is the gateway's, not connection setup.
    auto http_run = [&]() -> One {
      One o;
      thread_local std::unique_ptr<CURL, void (*)(CURL*)> handle(curl_easy_init(),
                                                                 curl_easy_cleanup);
      CURL* c = handle.get();
      curl_easy_reset(c);
      std::string out;
      curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
      headers = curl_slist_append(headers, "Expect:");
      curl_easy_setopt(c, CURLOPT_URL, url.c_str());
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, CurlWrite);
      curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
      curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
      const CURLcode rc = curl_easy_perform(c);
      long code = 0;
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
      curl_slist_free_all(headers);
      o.ok = rc == CURLE_OK && code == 200;
      if (!o.ok) o.error = "HTTP " + std::to_string(code) + " " + out.substr(0, 200);
      o.tokens = a.max_new_tokens;
      if (o.ok) {
        const auto parse_start = Clock::now();
        const json doc = json::parse(out, nullptr, /*allow_exceptions=*/false);
        o.client_ms = Sec(parse_start, Clock::now()) * 1e3;
        if (doc.is_object() && doc.contains("timings") && doc["timings"].contains("total_ms"))
          o.server_ms = doc["timings"]["total_ms"].get<double>();
      }
      return o;
    };
    for (auto& l : RunLevels("gateway", a, http_run)) levels.push_back(l);
  }
  report["levels"] = levels;

  // Serving overhead at concurrency 1, and batching scale-up (aggregate tokens/s at 8 vs 1).
  auto find = [&](const std::string& mode, int c) -> const json* {
    for (const auto& l : levels) {
      if (l["mode"] == mode && l["concurrency"] == c) return &l;
    }
    return nullptr;
  };
  json summary;
  if (auto e1 = find("engine", 1)) {
    for (const char* mode : {"grpc", "gateway"}) {
      if (auto l = find(mode, 1)) {
        // Two views: the difference of the p50s (noisy: compute varies by more than the overhead
        // on a busy machine) and the per-request latency minus the server's own time (precise).
        summary[std::string(mode) + "_p50_minus_engine_p50_ms"] =
            (*l)["p50_ms"].get<double>() - (*e1)["p50_ms"].get<double>();
        if (l->contains("overhead_p50_ms")) {
          summary[std::string(mode) + "_overhead_p50_ms"] = (*l)["overhead_p50_ms"].get<double>();
        }
      }
    }
    if (auto e8 = find("engine", 8)) {
      summary["engine_tokens_per_s_8_over_1"] =
          (*e8)["tokens_per_s"].get<double>() / (*e1)["tokens_per_s"].get<double>();
    }
  }
  report["summary"] = summary;

  // --- Table.
  std::cout << "\n== paligemma-bench: " << a.label << " (" << a.dtype << ", " << a.max_new_tokens
            << " new tokens, " << std::thread::hardware_concurrency() << " cores)\n";
  std::cout << std::left << std::setw(9) << "mode" << std::right << std::setw(6) << "conc"
            << std::setw(10) << "p50 ms" << std::setw(10) << "p95 ms" << std::setw(10) << "tok/s"
            << std::setw(8) << "errors"
            << "\n";
  for (const auto& l : levels) {
    std::cout << std::left << std::setw(9) << l["mode"].get<std::string>() << std::right
              << std::setw(6) << l["concurrency"].get<int>() << std::fixed << std::setprecision(1)
              << std::setw(10) << l["p50_ms"].get<double>() << std::setw(10)
              << l["p95_ms"].get<double>() << std::setw(10) << l["tokens_per_s"].get<double>()
              << std::setw(8) << l["errors"].get<int>() << "\n";
  }
  std::cout << std::setprecision(3);
  if (report.contains("prefill")) {
    std::cout << "prefill: " << report["prefill"]["flop_per_s"].get<double>() / 1e9
              << " GFLOP/s = " << report["prefill"]["ratio_to_matmul"].get<double>()
              << " x in-run matmul ("
              << report["prefill"]["matmul"]["flop_per_s"].get<double>() / 1e9 << " GFLOP/s)\n";
    std::cout << "decode: " << report["decode"]["ms_per_token"].get<double>()
              << " ms/token = " << report["decode"]["ratio_to_bound"].get<double>()
              << " x bandwidth bound (" << report["decode"]["bandwidth_bound_ms"].get<double>()
              << " ms; copy " << report["decode"]["copy_bandwidth_bytes_per_s"].get<double>() / 1e9
              << " GB/s)\n";
    std::cout << "decode tokens/s: batch 1 " << report["decode"]["tokens_per_s_b1"].get<double>()
              << ", batch 8 " << report["decode"]["tokens_per_s_b8"].get<double>() << " = "
              << report["decode"]["b8_over_b1"].get<double>() << " x\n";
    std::cout << "phases: vision " << report["phases"]["vision_ms"].get<double>() << " ms, prefill "
              << report["phases"]["prefill_ms"].get<double>() << " ms ("
              << report["phases"]["prefix_positions"].get<int64_t>() << " positions)\n";
  }
  std::cout << "load: " << load_s << " s = " << report["load"]["load_over_read"].get<double>()
            << " x read time (" << read_s << " s for " << bundle_bytes / 1e6 << " MB)\n";
  std::cout << "RSS after load: " << rss1 / 1e6
            << " MB = " << report["load"]["rss_over_weights"].get<double>() << " x weights ("
            << weight_bytes / 1e6 << " MB; KV cache " << kv_bytes / 1e6 << " MB)\n";
  for (auto it = summary.begin(); it != summary.end(); ++it) {
    std::cout << it.key() << ": " << it.value().get<double>() << "\n";
  }
  if (!a.json_out.empty()) {
    std::ofstream(a.json_out) << report.dump(2) << "\n";
    std::cout << "wrote " << a.json_out << "\n";
  }
  std::cout.flush();
  std::_Exit(0);  // skip tearing down LibTorch/gRPC singletons
}
