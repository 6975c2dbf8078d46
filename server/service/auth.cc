#include "server/service/auth.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace pg::service {
namespace {

absl::Status LineError(int line, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("api keys file line ", line, ": ", what));
}

// (This abseil's string_view is its own type, not std::string_view.)
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }
std::string_view Std(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace

absl::StatusOr<std::vector<ApiKey>> ParseApiKeys(std::string_view text) {
  std::vector<ApiKey> keys;
  std::set<std::string> seen;
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(Absl(text), '\n')) {
    ++line_no;
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line.front() == '#') continue;
    const std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.size() != 2) return LineError(line_no, "expected \"<role> <key>\"");
    ApiKey k;
    if (parts[0] == "user") {
      k.role = Role::kUser;
    } else if (parts[0] == "admin") {
      k.role = Role::kAdmin;
    } else {
      // The role word is not secret, but a line with the columns swapped would put the key here.
      return LineError(line_no, "the role must be user or admin");
    }
    const std::string_view key = Std(parts[1]);
    if (key.size() < kMinApiKeyLength) {
      return LineError(line_no,
                       absl::StrCat("the key is shorter than ", kMinApiKeyLength, " characters"));
    }
    for (char c : key) {
      if (c < 0x21 || c > 0x7e) {
        return LineError(line_no, "the key must be printable ASCII (it travels in a header)");
      }
    }
    if (!seen.insert(std::string(key)).second) {
      return LineError(line_no, "the key is listed twice");
    }
    k.key = std::string(key);
    keys.push_back(std::move(k));
  }
  if (keys.empty()) {
    // A keys file without keys would lock every caller out; it is far more likely a mistake.
    return absl::InvalidArgumentError("api keys file holds no key");
  }
  return keys;
}

absl::StatusOr<std::vector<ApiKey>> ReadApiKeysFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read the api keys file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError("cannot read the api keys file " + path);
  return ParseApiKeys(text.str());
}

void ApiKeyStore::Replace(std::vector<ApiKey> keys) {
  auto next = std::make_shared<const std::vector<ApiKey>>(std::move(keys));
  std::lock_guard<std::mutex> lock(mu_);
  keys_ = std::move(next);
}

std::optional<Role> ApiKeyStore::Lookup(std::string_view presented) const {
  std::shared_ptr<const std::vector<ApiKey>> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    keys = keys_;
  }
  std::optional<Role> found;
  // No early exit: the time spent does not say which key (if any) matched.
  for (const ApiKey& k : *keys) {
    if (ConstantTimeEquals(k.key, presented) && !found) found = k.role;
  }
  return found;
}

size_t ApiKeyStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keys_->size();
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Runs over the longer length so a shorter guess costs the same as a full one; volatile keeps
  // the compiler from turning the loop into an early-exit memcmp.
  const size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | (x ^ y);
  }
  return diff == 0;
}

std::string_view BearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(Absl(authorization.substr(0, kScheme.size())), Absl(kScheme))) {
    return {};
  }
  return Std(absl::StripAsciiWhitespace(Absl(authorization.substr(kScheme.size()))));
}

const char* RpcMethodName(RpcMethod method) {
  switch (method) {
    case RpcMethod::kSegment:
      return "Segment";
    case RpcMethod::kListModels:
      return "ListModels";
    case RpcMethod::kLoadModel:
      return "LoadModel";
    case RpcMethod::kUnloadModel:
      return "UnloadModel";
    case RpcMethod::kGetStats:
      return "GetStats";
  }
  return "?";
}

absl::Status Authorize(const AccessPolicy& policy, const Caller& caller, RpcMethod method) {
  if (method == RpcMethod::kGetStats && policy.metrics_open) return absl::OkStatus();
  if (policy.keys_required && !caller.authenticated) {
    return absl::UnauthenticatedError(
        "missing or unknown API key (send metadata \"authorization: Bearer <key>\")");
  }
  const bool control = method == RpcMethod::kLoadModel || method == RpcMethod::kUnloadModel;
  if (control && !policy.allow_model_control) {
    return absl::PermissionDeniedError(absl::StrCat(
        RpcMethodName(method), " is disabled: this server runs without --allow_model_control"));
  }
  if (!policy.keys_required) return absl::OkStatus();
  const bool user_may = method == RpcMethod::kSegment || method == RpcMethod::kListModels;
  if (caller.role == Role::kAdmin || user_may) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(RpcMethodName(method), " needs an admin API key"));
}

absl::Status Authorizer::Check(std::string_view authorization, RpcMethod method) const {
  Caller caller;
  if (policy_.keys_required && keys_ != nullptr) {
    const std::string_view token = BearerToken(authorization);
    if (!token.empty()) {
      if (std::optional<Role> role = keys_->Lookup(token)) {
        caller.authenticated = true;
        caller.role = *role;
      }
    }
  }
  return Authorize(policy_, caller, method);
}

}  // namespace pg::service
