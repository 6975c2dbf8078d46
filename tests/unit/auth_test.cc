// API key files, the constant-time key lookup, and the one table of who may call which RPC.
#include "server/service/auth.h"

#include <catch2/catch.hpp>

using pg::service::AccessPolicy;
using pg::service::ApiKeyStore;
using pg::service::Authorize;
using pg::service::Authorizer;
using pg::service::Caller;
using pg::service::ParseApiKeys;
using pg::service::Role;
using pg::service::RpcMethod;

namespace {

constexpr char kUserKey[] = "user-key-0123456789";
constexpr char kAdminKey[] = "admin-key-0123456789";

// The error's message, checked never to contain `secret`.
std::string ErrorOf(const std::string& text, const std::string& secret) {
  auto keys = ParseApiKeys(text);
  CATCH_REQUIRE_FALSE(keys.ok());
  const std::string message(keys.status().message());
  if (!secret.empty()) CATCH_CHECK(message.find(secret) == std::string::npos);
  return message;
}

}  // namespace

CATCH_TEST_CASE("a keys file: comments, blank lines, both roles, CRLF and tabs") {
  auto keys = ParseApiKeys(
      "# operators\n\n   \nuser   user-key-0123456789\r\n\tadmin\tadmin-key-0123456789  \n# end");
  CATCH_REQUIRE(keys.ok());
  CATCH_REQUIRE(keys->size() == 2);
  CATCH_CHECK((*keys)[0].role == Role::kUser);
  CATCH_CHECK((*keys)[0].key == kUserKey);
  CATCH_CHECK((*keys)[1].role == Role::kAdmin);
  CATCH_CHECK((*keys)[1].key == kAdminKey);
}

CATCH_TEST_CASE("a malformed keys file names the line, never the key") {
  CATCH_CHECK(ErrorOf("# c\nroot secret-key-0123456789\n", "secret-key-0123456789") ==
              "api keys file line 2: the role must be user or admin");
  // Columns swapped: the key sits where the role goes, and still is not echoed.
  CATCH_CHECK(ErrorOf("secret-key-0123456789 user\n", "secret-key-0123456789") ==
              "api keys file line 1: the role must be user or admin");
  CATCH_CHECK(ErrorOf("user short-secret\n", "short-secret") ==
              "api keys file line 1: the key is shorter than 16 characters");
  CATCH_CHECK(ErrorOf("user user-key-0123456789\n\nadmin user-key-0123456789\n",
                      "user-key-0123456789") == "api keys file line 3: the key is listed twice");
  CATCH_CHECK(ErrorOf("user\n", "") == "api keys file line 1: expected \"<role> <key>\"");
  CATCH_CHECK(ErrorOf("user a-key-0123456789 extra\n", "a-key-0123456789") ==
              "api keys file line 1: expected \"<role> <key>\"");
  CATCH_CHECK(ErrorOf("user key-with-\x01-0123456789\n", "key-with-") ==
              "api keys file line 1: the key must be printable ASCII (it travels in a header)");
  CATCH_CHECK(ErrorOf("# nothing here\n\n", "") == "api keys file holds no key");
  CATCH_CHECK(ErrorOf("", "") == "api keys file holds no key");
}

CATCH_TEST_CASE("exactly sixteen characters is long enough") {
  CATCH_CHECK(ParseApiKeys("user 0123456789abcdef").ok());
  CATCH_CHECK_FALSE(ParseApiKeys("user 0123456789abcde").ok());
}

CATCH_TEST_CASE("key lookup matches whole keys only") {
  ApiKeyStore store;
  CATCH_CHECK_FALSE(store.Lookup(kUserKey).has_value());
  store.Replace(*ParseApiKeys(std::string("user ") + kUserKey + "\nadmin " + kAdminKey));
  CATCH_CHECK(store.Lookup(kUserKey) == Role::kUser);
  CATCH_CHECK(store.Lookup(kAdminKey) == Role::kAdmin);
  CATCH_CHECK_FALSE(store.Lookup("user-key-012345678").has_value());    // a prefix
  CATCH_CHECK_FALSE(store.Lookup("user-key-01234567890").has_value());  // longer
  CATCH_CHECK_FALSE(store.Lookup("").has_value());
  store.Replace(*ParseApiKeys(std::string("admin ") + kAdminKey));
  CATCH_CHECK_FALSE(store.Lookup(kUserKey).has_value());  // reload removed it
  CATCH_CHECK(store.size() == 1);
}

CATCH_TEST_CASE("constant-time comparison is still a comparison") {
  using pg::service::ConstantTimeEquals;
  CATCH_CHECK(ConstantTimeEquals("", ""));
  CATCH_CHECK(ConstantTimeEquals("abc", "abc"));
  CATCH_CHECK_FALSE(ConstantTimeEquals("abc", "abd"));
  CATCH_CHECK_FALSE(ConstantTimeEquals("abc", "ab"));
  CATCH_CHECK_FALSE(ConstantTimeEquals("ab", "abc"));
  CATCH_CHECK_FALSE(ConstantTimeEquals(std::string("a\0", 2), "a"));
}

CATCH_TEST_CASE("the bearer token of an authorization value") {
  using pg::service::BearerToken;
  CATCH_CHECK(BearerToken("Bearer abc") == "abc");
  CATCH_CHECK(BearerToken("bearer  abc ") == "abc");
  CATCH_CHECK(BearerToken("BEARER abc") == "abc");
  CATCH_CHECK(BearerToken("Basic abc").empty());
  CATCH_CHECK(BearerToken("abc").empty());
  CATCH_CHECK(BearerToken("Bearer ").empty());
  CATCH_CHECK(BearerToken("").empty());
}

CATCH_TEST_CASE("who may call what") {
  using C = absl::StatusCode;
  const Caller anonymous{};
  const Caller user{true, Role::kUser};
  const Caller admin{true, Role::kAdmin};
  const RpcMethod all[] = {RpcMethod::kSegment, RpcMethod::kListModels, RpcMethod::kLoadModel,
                           RpcMethod::kUnloadModel, RpcMethod::kGetStats};
  struct Row {
    AccessPolicy policy;
    Caller caller;
    C expected[5];  // Segment, ListModels, LoadModel, UnloadModel, GetStats
  };
  const AccessPolicy keys{true, false, false};
  const AccessPolicy keys_control{true, true, false};
  const AccessPolicy keys_metrics{true, false, true};
  const AccessPolicy open{false, false, false};
  const AccessPolicy open_control{false, true, false};
  const C ok = C::kOk, unauth = C::kUnauthenticated, denied = C::kPermissionDenied;
  const Row rows[] = {
      {keys, anonymous, {unauth, unauth, unauth, unauth, unauth}},
      {keys, user, {ok, ok, denied, denied, denied}},
      {keys, admin, {ok, ok, denied, denied, ok}},  // model control off: even admin
      {keys_control, user, {ok, ok, denied, denied, denied}},
      {keys_control, admin, {ok, ok, ok, ok, ok}},
      {keys_control, anonymous, {unauth, unauth, unauth, unauth, unauth}},
      {keys_metrics, anonymous, {unauth, unauth, unauth, unauth, ok}},
      {keys_metrics, user, {ok, ok, denied, denied, ok}},
      {open, anonymous, {ok, ok, denied, denied, ok}},
      {open_control, anonymous, {ok, ok, ok, ok, ok}},
  };
  for (const Row& row : rows) {
    for (int m = 0; m < 5; ++m) {
      CATCH_INFO("keys=" << row.policy.keys_required
                         << " control=" << row.policy.allow_model_control << " metrics_open="
                         << row.policy.metrics_open << " authenticated=" << row.caller.authenticated
                         << " admin=" << (row.caller.role == Role::kAdmin)
                         << " method=" << pg::service::RpcMethodName(all[m]));
      CATCH_CHECK(Authorize(row.policy, row.caller, all[m]).code() == row.expected[m]);
    }
  }
}

CATCH_TEST_CASE("the authorizer reads the bearer token against the store") {
  ApiKeyStore store;
  store.Replace(*ParseApiKeys(std::string("user ") + kUserKey + "\nadmin " + kAdminKey));
  const Authorizer auth(AccessPolicy{true, true, false}, &store);
  CATCH_CHECK(auth.Check("", RpcMethod::kSegment).code() == absl::StatusCode::kUnauthenticated);
  CATCH_CHECK(auth.Check(kUserKey, RpcMethod::kSegment).code() ==
              absl::StatusCode::kUnauthenticated);  // no scheme
  CATCH_CHECK(auth.Check("Bearer wrong-key-0123456789", RpcMethod::kSegment).code() ==
              absl::StatusCode::kUnauthenticated);
  CATCH_CHECK(auth.Check(std::string("Bearer ") + kUserKey, RpcMethod::kSegment).ok());
  CATCH_CHECK(auth.Check(std::string("Bearer ") + kUserKey, RpcMethod::kUnloadModel).code() ==
              absl::StatusCode::kPermissionDenied);
  CATCH_CHECK(auth.Check(std::string("Bearer ") + kAdminKey, RpcMethod::kUnloadModel).ok());
  const auto denied = auth.Check("Bearer wrong-key-0123456789", RpcMethod::kGetStats);
  CATCH_CHECK(std::string(denied.message()).find("wrong-key") == std::string::npos);
}
