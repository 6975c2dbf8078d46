#include "server/service/url_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pg::service {
namespace {

bool InV4(const unsigned char* a, unsigned char b0, unsigned char b1, int prefix) {
  const uint32_t addr =
      (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) | (uint32_t{a[2]} << 8) | a[3];
  const uint32_t net = (uint32_t{b0} << 24) | (uint32_t{b1} << 16);
  const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return (addr & mask) == (net & mask);
}

bool PrivateV4(const unsigned char* a) {
  return InV4(a, 0, 0, 8) ||       // "this network", 0.0.0.0
         InV4(a, 10, 0, 8) ||      // RFC 1918
         InV4(a, 100, 64, 10) ||   // CGNAT (also Alibaba's metadata 100.100.100.200)
         InV4(a, 127, 0, 8) ||     // loopback
         InV4(a, 169, 254, 16) ||  // link-local, cloud metadata 169.254.169.254
         InV4(a, 172, 16, 12) ||   // RFC 1918
         (a[0] == 192 && a[1] == 0 && a[2] == 0) ||  // IETF protocol assignments
         InV4(a, 192, 168, 16) ||                    // RFC 1918
         InV4(a, 198, 18, 15) ||                     // benchmarking
         a[0] >= 224;                                // multicast, reserved, broadcast
}

bool PrivateV6(const unsigned char* a) {
  static const unsigned char kZero[16] = {};
  if (std::memcmp(a, kZero, 15) == 0 && (a[15] == 0 || a[15] == 1)) return true;  // :: and ::1
  // IPv4-mapped ::ffff:a.b.c.d and NAT64 64:ff9b::a.b.c.d: judge the embedded IPv4 address.
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const unsigned char kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  // SIIT's IPv4-translated ::ffff:0:a.b.c.d (RFC 2765) likewise.
  static const unsigned char kTranslated[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
  if (std::memcmp(a, kMapped, 12) == 0 || std::memcmp(a, kNat64, 12) == 0 ||
      std::memcmp(a, kTranslated, 12) == 0) {
    return PrivateV4(a + 12);
  }
  if (std::memcmp(a, kZero, 12) == 0) return true;  // deprecated IPv4-compatible ::a.b.c.d
  // Local-use NAT64 64:ff9b:1::/48 (RFC 8215): translates into the operator's own network.
  static const unsigned char kLocalNat64[6] = {0, 0x64, 0xff, 0x9b, 0, 0x01};
  if (std::memcmp(a, kLocalNat64, 6) == 0) return true;
  // Discard-only 100::/64 (RFC 6666).
  static const unsigned char kDiscard[8] = {0x01, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(a, kDiscard, 8) == 0) return true;
  // Teredo 2001::/32 (tunnels to an obfuscated IPv4 address) and documentation 2001:db8::/32: no
  // image host lives there.
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) return true;
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return true;
  if ((a[0] & 0xfe) == 0xfc) return true;  // ULA fc00::/7 (AWS metadata fd00:ec2::254)
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return true;     // link-local fe80::/10
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return true;     // site-local fec0::/10
  if (a[0] == 0xff) return true;                              // multicast
  if (a[0] == 0x20 && a[1] == 0x02) return PrivateV4(a + 2);  // 6to4 2002:a.b.c.d::/48
  return false;
}

bool CidrContains(const Cidr& c, int family, const unsigned char* a) {
  if (c.family != family) return false;
  int bits = c.prefix;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    const unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
    if ((a[i] & mask) != (c.bytes[i] & mask)) return false;
  }
  return true;
}

}  // namespace

absl::Status CheckUrlSyntax(std::string_view url) {
  if (url.size() > kMaxUrlBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("image_url is ", url.size(), " bytes; the limit is ", kMaxUrlBytes));
  }
  const size_t colon = url.find("://");
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError("image_url must be an absolute http:// or https:// URL");
  }
  const std::string scheme = absl::AsciiStrToLower(std::string(url.substr(0, colon)));
  if (scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError(
        absl::StrCat("image_url scheme '", scheme, "' is not allowed (only http and https)"));
  }
  std::string_view rest = url.substr(colon + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty()) return absl::InvalidArgumentError("image_url has no host");
  if (authority.find('@') != std::string_view::npos) {
    return absl::InvalidArgumentError("image_url may not contain credentials (user@host)");
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("image_url contains spaces or control characters");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Cidr> ParseCidr(std::string_view text) {
  const std::string trimmed(absl::StripAsciiWhitespace(std::string(text)));
  text = trimmed;
  Cidr c;
  const size_t slash = text.find('/');
  const std::string ip(text.substr(0, slash));
  int max_prefix;
  if (inet_pton(AF_INET, ip.c_str(), c.bytes) == 1) {
    c.family = AF_INET;
    max_prefix = 32;
  } else if (inet_pton(AF_INET6, ip.c_str(), c.bytes) == 1) {
    c.family = AF_INET6;
    max_prefix = 128;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("not an address range: '", std::string(text), "'"));
  }
  c.prefix = max_prefix;
  if (slash != std::string_view::npos &&
      (!absl::SimpleAtoi(std::string(text.substr(slash + 1)), &c.prefix) || c.prefix < 0 ||
       c.prefix > max_prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad prefix length in '", std::string(text), "'"));
  }
  return c;
}

absl::StatusOr<std::vector<Cidr>> ParseCidrList(std::string_view comma_separated) {
  std::vector<Cidr> out;
  for (absl::string_view part :
       absl::StrSplit(std::string(comma_separated), ',', absl::SkipWhitespace())) {
    absl::StatusOr<Cidr> c = ParseCidr(std::string(part));
    if (!c.ok()) return c.status();
    out.push_back(*c);
  }
  return out;
}

bool IsPrivateAddress(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return PrivateV4(reinterpret_cast<const unsigned char*>(&in->sin_addr));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    return PrivateV6(in6->sin6_addr.s6_addr);
  }
  return true;  // unix sockets and anything else: never
}

bool IsPrivateAddress(std::string_view numeric_ip) {
  const std::string ip(numeric_ip);
  sockaddr_in in{};
  sockaddr_in6 in6{};
  if (inet_pton(AF_INET, ip.c_str(), &in.sin_addr) == 1) {
    in.sin_family = AF_INET;
    return IsPrivateAddress(reinterpret_cast<const sockaddr*>(&in));
  }
  if (inet_pton(AF_INET6, ip.c_str(), &in6.sin6_addr) == 1) {
    in6.sin6_family = AF_INET6;
    return IsPrivateAddress(reinterpret_cast<const sockaddr*>(&in6));
  }
  return false;
}

std::string AddressToString(const sockaddr* addr) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, buf, sizeof buf);
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

absl::Status CheckAddress(const sockaddr* addr, bool allow_private,
                          const std::vector<Cidr>& allowed) {
  if (allow_private || !IsPrivateAddress(addr)) return absl::OkStatus();
  const unsigned char* bytes = nullptr;
  if (addr->sa_family == AF_INET) {
    bytes = reinterpret_cast<const unsigned char*>(
        &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr);
  } else if (addr->sa_family == AF_INET6) {
    bytes = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr;
  }
  if (bytes) {
    for (const Cidr& c : allowed) {
      if (CidrContains(c, addr->sa_family, bytes)) return absl::OkStatus();
    }
  }
  return absl::PermissionDeniedError(absl::StrCat("image_url leads to the non-public address ",
                                                  AddressToString(addr),
                                                  "; refused (loopback, private, link-local and "
                                                  "metadata addresses need --allow_private_urls)"));
}

}  // namespace pg::service
