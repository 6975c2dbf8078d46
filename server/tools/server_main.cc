// paligemma-server: the gRPC Segment/Model services over the model registry, with server reflection
// and grpc.health.v1. SIGTERM/SIGINT stop accepting, drain in-flight requests (up to
// --drain_timeout_s), exit 0; SIGHUP re-reads --api_keys_file.
#include <curl/curl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/common/log.h"
#include "server/common/status.h"
#include "server/engine/segmenter.h"
#include "server/image/decode_budget.h"
#include "server/registry/model_id.h"
#include "server/registry/registry.h"
#include "server/service/admission.h"
#include "server/service/auth.h"
#include "server/service/model_service.h"
#include "server/service/segment_service.h"
#include "server/service/stats.h"
#include "server/tools/server_flags.h"

#ifndef PG_DEFAULT_PYTHON
#define PG_DEFAULT_PYTHON "/usr/bin/python3"
#endif
#ifndef PG_DEFAULT_EXPORTER_DIR
#define PG_DEFAULT_EXPORTER_DIR "."
#endif

namespace {

constexpr char kSegmentService[] = "paligemma.v1.SegmentService";
constexpr char kModelService[] = "paligemma.v1.ModelService";

std::vector<pg::tools::FlagSpec> Specs() {
  return {
      {"host", "HOST", "0.0.0.0", false, "address to listen on"},
      {"port", "PORT", "50051", false, "port; 0 picks a free one and prints it"},
      {"models_dir", "MODELS_DIR", "models", false,
       "bundles/<id>/, huggingface/ (HF cache) and vae-oid.npz live here"},
      {"default_model", "MODEL_ID", "google/paligemma2-3b-mix-448", false,
       "model for requests without model_id"},
      {"preload", "PRELOAD", "false", true,
       "load the default model at start; health is NOT_SERVING until it is ready"},
      {"device", "DEVICE", "cpu", false, "cpu or cuda[:N]"},
      {"dtype", "DTYPE", "float32", false, "float32 or bfloat16"},
      {"threads", "THREADS", "0", false, "LibTorch intra-op threads; 0 = all cores"},
      {"freeze", "FREEZE", "false", true,
       "torch::jit::freeze the modules at load (weights become graph constants; no speed-up "
       "measured)"},
      {"max_loaded_models", "MAX_LOADED_MODELS", "1", false,
       "models kept loaded; the least recently used is unloaded past it"},
      {"hf_token_file", "HF_TOKEN_FILE", "/run/secrets/hf_token", false,
       "file holding the Hugging Face token (HF_TOKEN is used when it is absent)"},
      {"hf_endpoint", "HF_ENDPOINT", "https://huggingface.co", false, "Hugging Face Hub URL"},
      {"vae_url", "VAE_URL", "https://storage.googleapis.com/big_vision/paligemma/vae-oid.npz",
       false, "where vae-oid.npz is fetched from when MODELS_DIR lacks it"},
      // Registry limits: which ids a request may bring in, and what a load may cost.
      {"allowed_models", "ALLOWED_MODELS", pg::registry::kDefaultAllowedModels, false,
       "comma-separated glob patterns of model ids requests may load from the Hub; "
       "--default_model and bundles under MODELS_DIR/bundles are always allowed"},
      {"max_download_gb", "MAX_DOWNLOAD_GB", "20", false,
       "largest repo (all files) the server downloads from the Hub"},
      {"load_timeout_s", "LOAD_TIMEOUT_S", "3600", false,
       "a model load (download, export, load) running longer fails"},
      {"max_failed_models", "MAX_FAILED_MODELS", "32", false,
       "failed loads remembered (ListModels); older ones are forgotten"},
      {"python", "PG_PYTHON", PG_DEFAULT_PYTHON, false, "Python with torch, runs the exporter"},
      {"exporter_dir", "PG_EXPORTER_DIR", PG_DEFAULT_EXPORTER_DIR, false,
       "folder holding the exporter package"},
      {"allow_private_urls", "ALLOW_PRIVATE_URLS", "false", true,
       "let image_url reach loopback/private/link-local addresses (SSRF guard off)"},
      {"allowed_url_cidrs", "ALLOWED_URL_CIDRS", "", false,
       "comma-separated private ranges image_url may reach anyway, e.g. 10.1.2.0/24"},
      {"max_image_bytes", "MAX_IMAGE_BYTES", "20971520", false, "largest image (bytes or fetched)"},
      {"max_prompt_bytes", "MAX_PROMPT_BYTES", "2048", false, "longest prompt"},
      {"max_new_tokens_limit", "MAX_NEW_TOKENS_LIMIT", "1024", false,
       "largest max_new_tokens a request may ask for"},
      {"fetch_timeout_ms", "FETCH_TIMEOUT_MS", "20000", false, "image_url total timeout"},
      {"connect_timeout_ms", "CONNECT_TIMEOUT_MS", "5000", false, "image_url connect timeout"},
      {"max_redirects", "MAX_REDIRECTS", "3", false, "image_url redirects followed"},
      {"max_concurrent", "MAX_CONCURRENT", "0", false,
       "requests past admission at once (image_url fetch, decode, model, masks); 0 = "
       "max(--max_batch, 2 x cores)"},
      {"max_queue", "MAX_QUEUE", "64", false,
       "requests waiting for a decode slot per model; more get RESOURCE_EXHAUSTED"},
      {"max_batch", "MAX_BATCH", "8", false,
       "sequences decoded together per model (continuous batching; KV-cache slots; up to 64, "
       "batched answers are bit-identical to solo ones on AVX-512 CPUs)"},
      {"max_context", "MAX_CONTEXT", "0", false,
       "positions per KV-cache slot; 0 = image tokens + 512 + max_new_tokens_limit"},
      {"vision_cache_mb", "VISION_CACHE_MB", "256", false,
       "vision-tower outputs cached per model by image content (0 = off)"},
      {"response_cache_mb", "RESPONSE_CACHE_MB", "0", false,
       "whole responses cached by (image, prompt, options) per model (0 = off)"},
      {"decode_budget_mb", "DECODE_BUDGET_MB", "512", false,
       "decoded-image memory shared by concurrent requests: a decode reserves its peak first; "
       "one that cannot get it within 5 s gets RESOURCE_EXHAUSTED"},
      {"max_full_mask_pixels", "MAX_FULL_MASK_PIXELS", "300000000", false,
       "full-size mask pixels per response (width x height per mask); objects past it get an "
       "empty full_mask (box and 64x64 mask kept)"},
      {"drain_timeout_s", "DRAIN_TIMEOUT_S", "30", false,
       "on SIGTERM, how long in-flight requests may finish"},
      {"max_connection_age_s", "MAX_CONNECTION_AGE_S", "300", false,
       "clients are asked (GOAWAY) to reconnect after this long, so a gateway re-resolves DNS and "
       "spreads over replicas added since; in-flight calls finish first (0 = never)"},
      // Access control and transport security (docs/server.md, "Security").
      {"api_keys_file", "API_KEYS_FILE", "", false,
       "file of \"<role> <key>\" lines (role user or admin); when set every RPC but health and "
       "reflection needs metadata \"authorization: Bearer <key>\"; re-read on SIGHUP"},
      {"allow_model_control", "ALLOW_MODEL_CONTROL", "false", true,
       "allow LoadModel/UnloadModel (admin keys only when --api_keys_file is set)"},
      {"metrics_open", "METRICS_OPEN", "false", true,
       "GetStats (the gateway's /metrics and /v1/stats) needs no key"},
      {"tls_cert", "TLS_CERT", "", false, "PEM certificate chain: serve gRPC over TLS"},
      {"tls_key", "TLS_KEY", "", false, "PEM private key of --tls_cert"},
      {"tls_client_ca", "TLS_CLIENT_CA", "", false,
       "PEM CA bundle: require client certificates signed by it (mutual TLS)"},
      {"help", "", "false", true, "print this help"},
  };
}

int Fail(const std::string& message) {
  pg::log::Error(message);
  return 2;
}

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) return absl::NotFoundError(absl::StrCat("cannot read --", flag, " ", path));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", path, " is not PEM"));
  }
  return text;
}

// Plaintext unless --tls_cert/--tls_key are given; with --tls_client_ca clients must present a
// certificate that CA signed.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const pg::tools::Flags& flags) {
  const std::string cert = flags.Get("tls_cert"), key = flags.Get("tls_key");
  const std::string client_ca = flags.Get("tls_client_ca");
  if (cert.empty() && key.empty()) {
    if (!client_ca.empty()) return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert");
    return grpc::InsecureServerCredentials();
  }
  if (cert.empty() || key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  grpc::SslServerCredentialsOptions options;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem("tls_cert", cert));
  ASSIGN_OR_RETURN(pair.private_key, ReadPem("tls_key", key));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!client_ca.empty()) {
    ASSIGN_OR_RETURN(options.pem_root_certs, ReadPem("tls_client_ca", client_ca));
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

// What a (re)load logs about the keys: how many of each role, never the keys themselves.
std::vector<pg::log::Field> KeyCounts(const std::vector<pg::service::ApiKey>& keys) {
  int admins = 0;
  for (const auto& k : keys) admins += k.role == pg::service::Role::kAdmin;
  return {{"user_keys", static_cast<int>(keys.size()) - admins}, {"admin_keys", admins}};
}

std::string ReadToken(const pg::tools::Flags& flags) {
  std::ifstream in(flags.Get("hf_token_file"));
  std::string token;
  if (in && std::getline(in, token)) {
    token = std::string(absl::StripAsciiWhitespace(token));
    if (!token.empty()) return token;
  }
  const char* env = std::getenv("HF_TOKEN");
  return env ? std::string(absl::StripAsciiWhitespace(env)) : "";
}

}  // namespace

int main(int argc, char** argv) {
  pg::engine::EnsurePassiveOpenMp(argv);
  pg::tools::Flags flags(Specs());
  if (absl::Status s = flags.Parse(argc, argv); !s.ok()) {
    std::cerr << flags.Usage();
    return Fail(std::string(s.message()));
  }
  if (flags.GetBool("help")) {
    std::cout << flags.Usage();
    return 0;
  }
  // Signals are blocked before any thread starts, so only the sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);  // re-reads --api_keys_file
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  std::map<std::string, long long> ints;
  for (const char* name :
       {"port", "threads", "max_loaded_models", "max_image_bytes", "max_prompt_bytes",
        "max_new_tokens_limit", "fetch_timeout_ms", "connect_timeout_ms", "max_redirects",
        "max_concurrent", "max_queue", "drain_timeout_s", "max_batch", "max_context",
        "vision_cache_mb", "response_cache_mb", "max_connection_age_s", "decode_budget_mb",
        "max_full_mask_pixels"}) {
    auto v = flags.GetInt(name);
    if (!v.ok()) return Fail(std::string(v.status().message()));
    if (*v < 0) return Fail(absl::StrCat("--", name, " must not be negative"));
    ints[name] = *v;
  }
  // An explicitly named token file must exist (a typo would otherwise silently mean "no token");
  // --hf_token_file= (empty) means none.
  if (flags.WasSet("hf_token_file") && !flags.Get("hf_token_file").empty() &&
      !std::ifstream(flags.Get("hf_token_file"))) {
    return Fail("cannot read --hf_token_file " + flags.Get("hf_token_file"));
  }

  pg::registry::RegistryOptions ro;
  ro.models_dir = flags.Get("models_dir");
  ro.default_model = flags.Get("default_model");
  if (absl::Status s = pg::registry::ValidateModelId(ro.default_model); !s.ok()) {
    return Fail("--default_model: " + std::string(s.message()));
  }
  pg::model::LoadOptions load;
  load.device = flags.Get("device");
  load.dtype = flags.Get("dtype");
  load.freeze = flags.GetBool("freeze");
  auto checked = pg::model::CheckLoadOptions(load);
  if (!checked.ok()) return Fail(absl::StrCat("--device/--dtype: ", checked.status().message()));
  ro.engine.load = *checked;
  ro.engine.threads = static_cast<int>(ints["threads"]);
  ro.engine.image_limits.max_bytes = ints["max_image_bytes"];
  ro.engine.max_prompt_bytes = ints["max_prompt_bytes"];
  ro.engine.max_new_tokens_limit = static_cast<int>(ints["max_new_tokens_limit"]);
  ro.engine.max_batch = static_cast<int>(std::max(1LL, ints["max_batch"]));
  ro.engine.max_queue = static_cast<int>(ints["max_queue"]);
  ro.engine.max_context = ints["max_context"];
  ro.engine.vision_cache_bytes = ints["vision_cache_mb"] << 20;
  ro.engine.response_cache_bytes = ints["response_cache_mb"] << 20;
  if (ints["decode_budget_mb"] == 0) return Fail("--decode_budget_mb must be positive");
  ro.engine.decode_budget = std::make_shared<pg::image::DecodeBudget>(
      ints["decode_budget_mb"] << 20, std::chrono::seconds(5));
  ro.engine.max_full_mask_pixels = ints["max_full_mask_pixels"];
  ro.max_loaded_models = static_cast<int>(std::max(1LL, ints["max_loaded_models"]));
  ro.hub.endpoint = flags.Get("hf_endpoint");
  while (!ro.hub.endpoint.empty() && ro.hub.endpoint.back() == '/') ro.hub.endpoint.pop_back();
  ro.hub.token = ReadToken(flags);
  ro.vae_url = flags.Get("vae_url");
  ro.exporter.python = flags.Get("python");
  ro.exporter.module_dir = flags.Get("exporter_dir");
  ro.exporter.dtype = ro.engine.load.dtype;  // canonical: the exporter knows the full names only
  {
    auto allowed = pg::registry::ParseAllowedModels(flags.Get("allowed_models"));
    if (!allowed.ok()) return Fail(std::string(allowed.status().message()));
    ro.allowed_models = *allowed;
    for (const char* name : {"max_download_gb", "load_timeout_s", "max_failed_models"}) {
      auto v = flags.GetInt(name);
      if (!v.ok()) return Fail(std::string(v.status().message()));
      if (*v < 0 || (*v == 0 && std::string(name) != "max_failed_models")) {
        return Fail(absl::StrCat("--", name, " must be positive"));
      }
      ints[name] = *v;
    }
    ro.hub.max_download_bytes = ints["max_download_gb"] << 30;
    ro.load_timeout = std::chrono::seconds(ints["load_timeout_s"]);
    ro.max_failed_models = static_cast<int>(ints["max_failed_models"]);
  }
  pg::registry::ModelRegistry registry(ro);

  pg::service::RequestLimits limits;
  limits.max_prompt_bytes = ints["max_prompt_bytes"];
  limits.max_image_bytes = ints["max_image_bytes"];
  limits.max_new_tokens_limit = static_cast<int>(ints["max_new_tokens_limit"]);
  pg::service::FetchOptions fetch;
  fetch.max_bytes = ints["max_image_bytes"];
  fetch.total_timeout_ms = ints["fetch_timeout_ms"];
  fetch.connect_timeout_ms = ints["connect_timeout_ms"];
  fetch.max_redirects = ints["max_redirects"];
  fetch.allow_private = flags.GetBool("allow_private_urls");
  auto cidrs = pg::service::ParseCidrList(flags.Get("allowed_url_cidrs"));
  if (!cidrs.ok()) return Fail("--allowed_url_cidrs: " + std::string(cidrs.status().message()));
  fetch.allowed = *cidrs;

  // Model compute is bounded per model by its scheduler (--max_batch running, --max_queue waiting);
  // --max_concurrent bounds everything around it too (fetch, decode, masks). Its default keeps
  // every decode slot of one model busy and the cores fed while others fetch or decode images.
  const long long cores = std::max(1u, std::thread::hardware_concurrency());
  const long long max_concurrent = ints["max_concurrent"] > 0
                                       ? ints["max_concurrent"]
                                       : std::max<long long>(ro.engine.max_batch, 2 * cores);
  pg::service::Admission admission(static_cast<int>(max_concurrent),
                                   static_cast<int>(ints["max_queue"]));
  pg::service::ServerStats stats;
  pg::service::SegmentServiceImpl segment_service(&registry, &admission, limits, fetch, &stats);
  pg::service::ModelServiceImpl model_service(&registry, &stats);

  const std::string keys_file = flags.Get("api_keys_file");
  pg::service::ApiKeyStore keys;
  if (!keys_file.empty()) {
    auto parsed = pg::service::ReadApiKeysFile(keys_file);
    if (!parsed.ok()) return Fail("--api_keys_file: " + std::string(parsed.status().message()));
    pg::log::Info("api keys loaded", KeyCounts(*parsed));
    keys.Replace(std::move(*parsed));
  }
  pg::service::AccessPolicy policy;
  policy.keys_required = !keys_file.empty();
  policy.allow_model_control = flags.GetBool("allow_model_control");
  policy.metrics_open = flags.GetBool("metrics_open");
  const pg::service::Authorizer authorizer(policy, &keys);
  segment_service.set_authorizer(&authorizer);
  model_service.set_authorizer(&authorizer);
  auto credentials = ServerCredentials(flags);
  if (!credentials.ok()) return Fail(std::string(credentials.status().message()));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string address = absl::StrCat(flags.Get("host"), ":", ints["port"]);
  builder.AddListeningPort(address, *credentials, &port);
  // A 20 MB image plus the rest of the request fits; responses with full-size masks may be larger.
  builder.SetMaxReceiveMessageSize(static_cast<int>(ints["max_image_bytes"] + (1 << 20)));
  builder.SetMaxSendMessageSize(-1);
  if (ints["max_connection_age_s"] > 0) {
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_MS,
        static_cast<int>(std::min<long long>(ints["max_connection_age_s"] * 1000, INT32_MAX)));
  }
  builder.RegisterService(&segment_service);
  builder.RegisterService(&model_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return Fail("cannot listen on " + address);

  const bool preload = flags.GetBool("preload");
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  auto set_serving = [health](bool serving) {
    health->SetServingStatus("", serving);
    health->SetServingStatus(kSegmentService, serving);
  };
  health->SetServingStatus(kModelService, true);
  set_serving(!preload);
  std::thread preloader;
  std::atomic<bool> stopping{false};
  if (preload) {
    // With --preload, SERVING means "the default model answers now" (readiness probes).
    registry.SetListener(
        [&, default_id = ro.default_model](const std::string& id, pg::registry::ModelState state) {
          if (id == default_id) set_serving(state == pg::registry::ModelState::kReady);
        });
    preloader = std::thread([&] {
      auto r = registry.Get("", std::chrono::steady_clock::time_point::max(),
                            [&] { return stopping.load(); });
      if (!r.ok()) {
        pg::log::Error("preload failed", {{"error", std::string(r.status().message())}});
      }
    });
  }

  const std::string host = flags.Get("host");
  std::cout << "listening on " << host << ":" << port << std::endl;
  pg::log::Info("serving", {{"address", absl::StrCat(host, ":", port)},
                            {"models_dir", ro.models_dir},
                            {"default_model", ro.default_model},
                            {"preload", preload},
                            {"max_concurrent", max_concurrent},
                            {"decode_budget_mb", ints["decode_budget_mb"]},
                            {"hub", ro.hub.endpoint},
                            {"hub_token", !ro.hub.token.empty()},
                            {"api_keys", policy.keys_required},
                            {"model_control", policy.allow_model_control},
                            {"metrics_open", policy.metrics_open},
                            {"tls", !flags.Get("tls_cert").empty()},
                            {"mtls", !flags.Get("tls_client_ca").empty()}});

  int sig = 0;
  while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP) {
    if (keys_file.empty()) {
      pg::log::Warn("SIGHUP ignored: no --api_keys_file to re-read");
      continue;
    }
    // A bad file keeps the keys in force: a typo must not lock every client out (or let all in).
    auto parsed = pg::service::ReadApiKeysFile(keys_file);
    if (!parsed.ok()) {
      pg::log::Error("api keys reload failed; keeping the previous keys",
                     {{"error", std::string(parsed.status().message())}});
      continue;
    }
    pg::log::Info("api keys reloaded", KeyCounts(*parsed));
    keys.Replace(std::move(*parsed));
  }
  pg::log::Info("draining", {{"signal", sig}});
  stopping = true;
  registry.SetListener(nullptr);
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::seconds(ints["drain_timeout_s"]));
  server->Wait();
  if (preloader.joinable()) preloader.join();
  pg::log::Info("drained, exiting");
  std::cout.flush();
  std::cerr.flush();
  // Skip destructors: a download or export in progress would otherwise delay the exit by minutes;
  // its partial files are resumed or replaced by the next start.
  std::_Exit(0);
}
