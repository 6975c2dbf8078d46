// API keys with two roles and the one decision of who may call which RPC. The server is the
// security boundary (its port can be reached without the gateway), so every RPC asks Authorize()
// once at its entry. Keys are secrets: they are compared in constant time and never logged, and a
// key file's errors name the line, never the key.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pg::service {

enum class Role { kUser, kAdmin };

struct ApiKey {
  Role role = Role::kUser;
  std::string key;
};

// Keys shorter than this are refused: a key is a bearer secret, not a password to remember.
inline constexpr size_t kMinApiKeyLength = 16;

// The keys file: each line that is not empty and does not start with '#' is "<role> <key>", role
// `user` or `admin`, key at least kMinApiKeyLength printable ASCII characters without spaces. A
// malformed line, a duplicate key or a file without any key is an error naming the line number.
absl::StatusOr<std::vector<ApiKey>> ParseApiKeys(std::string_view text);
absl::StatusOr<std::vector<ApiKey>> ReadApiKeysFile(const std::string& path);

// The current key set; replaced whole on reload (SIGHUP) while RPCs read it.
class ApiKeyStore {
 public:
  void Replace(std::vector<ApiKey> keys);
  // The role of `presented`, or null when no key matches. Every stored key is compared, each in
  // time independent of where the bytes differ, so the answer's timing does not reveal a prefix.
  std::optional<Role> Lookup(std::string_view presented) const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<ApiKey>> keys_ = std::make_shared<std::vector<ApiKey>>();
};

// True when a and b are equal, in time that depends only on their lengths.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// The key in an `authorization` metadata value "Bearer <key>" (scheme case-insensitive), or "" when
// the value has another form.
std::string_view BearerToken(std::string_view authorization);

enum class RpcMethod { kSegment, kListModels, kLoadModel, kUnloadModel, kGetStats };
const char* RpcMethodName(RpcMethod method);

struct AccessPolicy {
  bool keys_required = false;        // an --api_keys_file is set
  bool allow_model_control = false;  // LoadModel/UnloadModel may be called at all
  bool metrics_open = false;         // GetStats needs no key
};

// Who is calling: `authenticated` when a configured key matched, with that key's role.
struct Caller {
  bool authenticated = false;
  Role role = Role::kUser;
};

// OK, UNAUTHENTICATED (keys are required and none matched) or PERMISSION_DENIED (the key's role
// may not call `method`, or model control is off). With keys: `user` may Segment and ListModels,
// `admin` everything; GetStats is open to anyone with metrics_open. Without keys everyone is
// allowed everything except LoadModel/UnloadModel while model control is off.
absl::Status Authorize(const AccessPolicy& policy, const Caller& caller, RpcMethod method);

// The policy plus the key store: what an RPC's entry checks.
class Authorizer {
 public:
  Authorizer(AccessPolicy policy, const ApiKeyStore* keys) : policy_(policy), keys_(keys) {}
  // `authorization` is the request's metadata value ("" when absent).
  absl::Status Check(std::string_view authorization, RpcMethod method) const;
  const AccessPolicy& policy() const { return policy_; }

 private:
  AccessPolicy policy_;
  const ApiKeyStore* keys_;
};

}  // namespace pg::service
