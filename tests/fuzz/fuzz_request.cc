// libFuzzer target: the gRPC edge's request validation and the image_url SSRF policy.
// The first byte picks the mode:
//   0: the rest is a SegmentRequest in protobuf wire format (as a client would send it);
//   1: the rest fills a SegmentRequest field by field (FuzzedDataProvider), so that the fuzzer
//   reaches
//      the checks behind "prompt is not empty" and "exactly one image source" quickly;
//   2: URL policy on text: CheckUrlSyntax, ParseCidr/ParseCidrList, IsPrivateAddress;
//   3: URL policy on raw addresses: a fuzzed IPv4 address must be judged the same as its
//   IPv4-mapped
//      (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) IPv6 forms, and CheckAddress must agree with
//      IsPrivateAddress and the allow-list.
// Invariants (a violation traps): a request that validates has a non-blank prompt within the limit,
// exactly one image source, max_new_tokens within [1, limit], and a URL that passes CheckUrlSyntax.
#include <arpa/inet.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "server/service/request_validation.h"
#include "server/service/url_policy.h"

namespace {

using pg::service::ParsedSegmentRequest;

void CheckParsed(const paligemma::v1::SegmentRequest& request) {
  pg::service::RequestLimits limits;
  limits.max_prompt_bytes = 64;
  limits.max_image_bytes = 256;
  limits.max_new_tokens_limit = 1024;
  absl::StatusOr<ParsedSegmentRequest> parsed = pg::service::ParseSegmentRequest(request, limits);
  if (!parsed.ok()) {
    if (parsed.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return;
  }
  const ParsedSegmentRequest& p = *parsed;
  if (p.prompt.find_first_not_of(" \t\r\n") == std::string::npos) __builtin_trap();
  if (p.prompt.size() > limits.max_prompt_bytes) __builtin_trap();
  if (p.image_data.empty() == p.image_url.empty()) __builtin_trap();
  if (static_cast<int64_t>(p.image_data.size()) > limits.max_image_bytes) __builtin_trap();
  if (!p.image_url.empty() && !pg::service::CheckUrlSyntax(p.image_url).ok()) __builtin_trap();
  if (p.options.max_new_tokens < 1 || p.options.max_new_tokens > limits.max_new_tokens_limit)
    __builtin_trap();
}

void UrlText(const std::string& text) {
  absl::Status syntax = pg::service::CheckUrlSyntax(text);
  if (syntax.ok()) {
    // What the syntax check promises the fetcher: a scheme of http/https, no credentials, no
    // whitespace or control bytes.
    const size_t colon = text.find("://");
    if (colon == std::string::npos) __builtin_trap();
    for (char c : text) {
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) __builtin_trap();
    }
  }
  (void)pg::service::ParseCidr(text);
  (void)pg::service::ParseCidrList(text);
  (void)pg::service::IsPrivateAddress(text);
}

void RawAddress(FuzzedDataProvider& in) {
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  const uint32_t a = in.ConsumeIntegral<uint32_t>();
  std::memcpy(&v4.sin_addr, &a, 4);
  const bool private4 = pg::service::IsPrivateAddress(reinterpret_cast<const sockaddr*>(&v4));

  for (const unsigned char prefix0 : {0, 1}) {
    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    if (prefix0 == 0) {  // ::ffff:a.b.c.d
      v6.sin6_addr.s6_addr[10] = 0xff;
      v6.sin6_addr.s6_addr[11] = 0xff;
    } else {  // 64:ff9b::a.b.c.d
      v6.sin6_addr.s6_addr[1] = 0x64;
      v6.sin6_addr.s6_addr[2] = 0xff;
      v6.sin6_addr.s6_addr[3] = 0x9b;
    }
    std::memcpy(&v6.sin6_addr.s6_addr[12], &a, 4);
    if (pg::service::IsPrivateAddress(reinterpret_cast<const sockaddr*>(&v6)) != private4)
      __builtin_trap();  // an IPv6 spelling of an IPv4 address must not change the verdict
  }

  sockaddr_in6 any6{};
  any6.sin6_family = AF_INET6;
  const std::vector<uint8_t> bytes = in.ConsumeBytes<uint8_t>(16);
  if (!bytes.empty()) std::memcpy(any6.sin6_addr.s6_addr, bytes.data(), bytes.size());
  const auto* addr6 = reinterpret_cast<const sockaddr*>(&any6);
  const bool private6 = pg::service::IsPrivateAddress(addr6);
  (void)pg::service::AddressToString(addr6);

  absl::StatusOr<std::vector<pg::service::Cidr>> allowed =
      pg::service::ParseCidrList(in.ConsumeRemainingBytesAsString());
  const std::vector<pg::service::Cidr> allow =
      allowed.ok() ? *allowed : std::vector<pg::service::Cidr>{};
  for (const sockaddr* addr : {reinterpret_cast<const sockaddr*>(&v4), addr6}) {
    const bool is_private = addr == addr6 ? private6 : private4;
    if (!pg::service::CheckAddress(addr, /*allow_private=*/true, allow).ok()) __builtin_trap();
    const absl::Status s = pg::service::CheckAddress(addr, /*allow_private=*/false, {});
    if (s.ok() == is_private) __builtin_trap();  // no allow-list: exactly the private ones refused
    (void)pg::service::CheckAddress(addr, /*allow_private=*/false, allow);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // Invalid UTF-8 in string fields is logged by protobuf on every parse; the parse failing is what
  // matters here, and the log lines would drown the fuzzer's output.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 4;
  if (mode == 0) {
    paligemma::v1::SegmentRequest request;
    if (request.ParseFromArray(data + 1, static_cast<int>(size - 1))) CheckParsed(request);
  } else if (mode == 1) {
    FuzzedDataProvider in(data + 1, size - 1);
    paligemma::v1::SegmentRequest request;
    request.set_prompt(in.ConsumeRandomLengthString(96));
    request.set_image_data(in.ConsumeRandomLengthString(300));
    request.set_image_url(in.ConsumeRandomLengthString(96));
    request.set_model_id(in.ConsumeRandomLengthString(128));
    if (in.ConsumeBool()) request.set_max_new_tokens(in.ConsumeIntegral<int32_t>());
    if (in.ConsumeBool()) request.mutable_options()->set_include_image(in.ConsumeBool());
    if (in.ConsumeBool()) request.mutable_options()->set_include_full_masks(in.ConsumeBool());
    CheckParsed(request);
  } else if (mode == 2) {
    UrlText(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  } else {
    FuzzedDataProvider in(data + 1, size - 1);
    RawAddress(in);
  }
  return 0;
}
