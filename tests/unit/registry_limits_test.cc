// The registry's bounds, against a Hub that cannot answer (a refused port: loads fail at once; a
// listening socket that never answers: loads hang until cancelled): refused ids leave no entry, the
// failed entries kept are capped, concurrent and queued loads are capped, UnloadModel cancels a
// loading model (ABORTED) and a load past its time limit fails. Loads stop through the curl
// progress callback, which libcurl calls at least once a second while a transfer waits.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "server/registry/registry.h"

namespace fs = std::filesystem;
using namespace pg::registry;
using Clock = std::chrono::steady_clock;

namespace {

// A TCP listener that accepts (the kernel's backlog) and never answers.
struct SilentListener {
  int fd = -1;
  int port = 0;
  SilentListener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd, 64);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd); }
};

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / (name + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

RegistryOptions Options(const TempDir& dir, const std::string& endpoint) {
  RegistryOptions o;
  o.models_dir = dir.path.string();
  o.default_model = "org/default";
  o.allowed_models = {"org/*"};
  o.hub.endpoint = endpoint;
  o.hub.attempts = 1;
  o.hub.connect_timeout_ms = 2000;
  return o;
}

std::map<std::string, ModelInfo> Listed(ModelRegistry& r) {
  std::map<std::string, ModelInfo> out;
  for (auto& m : r.List()) out[m.id] = m;
  return out;
}

// Waits (bounded) until `id` is in `state`.
bool WaitFor(ModelRegistry& r, const std::string& id, ModelState state) {
  for (int i = 0; i < 300; ++i) {
    auto l = Listed(r);
    if (l.count(id) && l[id].state == state) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace

CATCH_TEST_CASE("an id outside --allowed_models is refused before it is recorded") {
  TempDir dir("pg-reg-allowed-");
  ModelRegistry r(Options(dir, "http://127.0.0.1:1"));
  auto refused = r.Get("attacker/evil-model", Clock::now() + std::chrono::seconds(30));
  CATCH_CHECK(refused.status().code() == absl::StatusCode::kNotFound);
  CATCH_CHECK(std::string(refused.status().message()) ==
              "model attacker/evil-model is not available on this server");
  CATCH_CHECK(r.CheckServable("attacker/evil-model").code() == absl::StatusCode::kNotFound);
  CATCH_CHECK(Listed(r).count("attacker/evil-model") == 0);
  CATCH_CHECK(r.Unload("attacker/evil-model").status().code() == absl::StatusCode::kNotFound);
  // The default model and a bundle on disk are always servable.
  CATCH_CHECK(r.CheckServable("").ok());
  fs::create_directories(dir.path / "bundles" / "local");
  std::ofstream(dir.path / "bundles" / "local" / "manifest.json") << "{}";
  CATCH_CHECK(r.CheckServable("local").ok());
  CATCH_CHECK(r.CheckServable("bad id!").code() == absl::StatusCode::kInvalidArgument);
  // HF cache folders are listed only for ids the server would serve.
  for (const char* folder : {"models--evil--x", "models--org--cached"}) {
    const fs::path repo = dir.path / "huggingface" / folder;
    fs::create_directories(repo / "snapshots" / "abc");
    std::ofstream(repo / "snapshots" / "abc" / "config.json") << "{}";
    fs::create_directories(repo / "refs");
    std::ofstream(repo / "refs" / "main") << "abc";
  }
  const auto listed = Listed(r);
  CATCH_CHECK(listed.count("evil/x") == 0);
  CATCH_REQUIRE(listed.count("org/cached") == 1);
  CATCH_CHECK(listed.at("org/cached").source == "hf-cache");
  CATCH_CHECK(listed.at("local").source == "bundle");
  CATCH_CHECK(r.Get("evil/x", Clock::now()).status().code() == absl::StatusCode::kNotFound);
}

CATCH_TEST_CASE("only the last max_failed_models failed loads are kept") {
  TempDir dir("pg-reg-failed-");
  RegistryOptions o = Options(dir, "http://127.0.0.1:1");  // connection refused: fails at once
  o.max_failed_models = 5;
  ModelRegistry r(o);
  for (int i = 0; i < 40; ++i) {
    auto m = r.Get("org/m" + std::to_string(i), Clock::now() + std::chrono::seconds(30));
    CATCH_REQUIRE(m.status().code() == absl::StatusCode::kUnavailable);
    // The Hub's URL is the operator's: the client-visible message does not hold it.
    CATCH_CHECK(std::string(m.status().message()).find("127.0.0.1") == std::string::npos);
  }
  const auto listed = Listed(r);
  CATCH_CHECK(listed.size() == 5);
  for (int i = 35; i < 40; ++i) {
    const std::string id = "org/m" + std::to_string(i);
    CATCH_INFO(id);
    CATCH_REQUIRE(listed.count(id));
    CATCH_CHECK(listed.at(id).state == ModelState::kFailed);
    CATCH_CHECK(listed.at(id).source == "hub");
  }
}

CATCH_TEST_CASE("concurrent and queued loads are capped and UnloadModel cancels a load") {
  TempDir dir("pg-reg-queue-");
  SilentListener hub;
  RegistryOptions o = Options(dir, "http://127.0.0.1:" + std::to_string(hub.port));
  o.hub.low_speed_timeout_s = 600;  // only a cancel ends these loads
  o.max_concurrent_loads = 2;
  o.max_queued_loads = 3;
  ModelRegistry r(o);
  int exhausted = 0;
  for (int i = 0; i < 10; ++i) {
    // A deadline already passed: the call starts (or queues) the load and returns at once.
    auto m = r.Get("org/q" + std::to_string(i), Clock::now());
    if (m.status().code() == absl::StatusCode::kResourceExhausted) ++exhausted;
  }
  CATCH_CHECK(exhausted == 5);
  auto listed = Listed(r);
  CATCH_CHECK(listed.size() == 5);  // refused loads leave no entry
  for (int i = 0; i < 5; ++i) {
    CATCH_CHECK(listed["org/q" + std::to_string(i)].state == ModelState::kLoading);
  }
  CATCH_CHECK(listed["org/q3"].progress.phase == "queued");
  // The default model always gets a place.
  CATCH_CHECK(r.Get("", Clock::now()).status().code() == absl::StatusCode::kDeadlineExceeded);

  // A queued load is dropped at once; a running one stops at its next progress callback.
  CATCH_CHECK(r.Unload("org/q4").status().code() == absl::StatusCode::kAborted);
  CATCH_CHECK(Listed(r)["org/q4"].state == ModelState::kFailed);
  const auto t0 = Clock::now();
  CATCH_CHECK(r.Unload("org/q0").status().code() == absl::StatusCode::kAborted);
  CATCH_REQUIRE(WaitFor(r, "org/q0", ModelState::kFailed));
  std::printf("[measure] cancelled download stopped after %.0f ms\n",
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  CATCH_CHECK_THAT(Listed(r)["org/q0"].error, Catch::Contains("cancelled"));
  // Its slot went to the default model (queued at the front).
  CATCH_CHECK(WaitFor(r, "org/default", ModelState::kLoading));
  CATCH_CHECK(Listed(r)["org/default"].progress.phase != "queued");
  // A later request loads a cancelled model again.
  CATCH_CHECK(r.Unload("org/q1").status().code() == absl::StatusCode::kAborted);
  CATCH_REQUIRE(WaitFor(r, "org/q1", ModelState::kFailed));
  CATCH_CHECK(r.Get("org/q1", Clock::now()).status().code() == absl::StatusCode::kDeadlineExceeded);
  CATCH_CHECK(Listed(r)["org/q1"].state == ModelState::kLoading);
}

CATCH_TEST_CASE("a load past --load_timeout_s fails") {
  TempDir dir("pg-reg-timeout-");
  SilentListener hub;
  RegistryOptions o = Options(dir, "http://127.0.0.1:" + std::to_string(hub.port));
  o.hub.low_speed_timeout_s = 600;
  o.load_timeout = std::chrono::seconds(1);
  ModelRegistry r(o);
  const auto t0 = Clock::now();
  auto m = r.Get("org/slow", Clock::now() + std::chrono::seconds(60));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::printf("[measure] load with a 1 s limit failed after %.0f ms\n", ms);
  CATCH_CHECK(m.status().code() == absl::StatusCode::kFailedPrecondition);
  CATCH_CHECK_THAT(std::string(m.status().message()), Catch::Contains("--load_timeout_s"));
}
