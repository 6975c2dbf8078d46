// Which image_url targets the server may fetch (SSRF guard). Pure functions, checked again on every
// connection curl opens (after DNS resolution and after each redirect), not just on the URL's text.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pg::service {

// Longest image_url accepted (browsers and CDNs commonly stop at 8 KiB).
inline constexpr size_t kMaxUrlBytes = 8192;

// http:// or https:// with a host, at most kMaxUrlBytes; anything else (file:, gopher:, no host,
// userinfo, spaces or control characters) is InvalidArgument. Numeric spellings of private hosts
// (2130706433, 0x7f000001, 0177.0.0.1, 127.1, [::ffff:7f00:1]) and names pass here on purpose: the
// verdict is CheckAddress on the address curl actually connects to.
absl::Status CheckUrlSyntax(std::string_view url);

// An address range, e.g. 10.1.0.0/16 or fd00::/8.
struct Cidr {
  int family = 0;  // AF_INET or AF_INET6
  unsigned char bytes[16] = {};
  int prefix = 0;
};
absl::StatusOr<Cidr> ParseCidr(std::string_view text);
absl::StatusOr<std::vector<Cidr>> ParseCidrList(std::string_view comma_separated);

// Loopback, private (RFC 1918, ULA), link-local (incl. 169.254.169.254 metadata), CGNAT,
// unspecified, multicast, reserved, and IPv4-mapped/-translated/NAT64/6to4 forms of those;
// local-use NAT64, discard, Teredo and documentation IPv6 ranges. `text` is the numeric address.
bool IsPrivateAddress(const sockaddr* addr);
bool IsPrivateAddress(std::string_view numeric_ip);  // for tests; false if not an address

// OK unless the address is private and neither allow_private nor one of `allowed` covers it; then
// PermissionDenied naming the address.
absl::Status CheckAddress(const sockaddr* addr, bool allow_private,
                          const std::vector<Cidr>& allowed);

std::string AddressToString(const sockaddr* addr);

}  // namespace pg::service
