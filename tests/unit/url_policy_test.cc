// The SSRF guard's address classification and URL syntax checks, and FetchUrl's per-connection
// enforcement against a listener on loopback (more spellings over the wire in
// tests/integration/test_image_url.py).
#include "server/service/url_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "server/service/url_fetch.h"

using pg::service::CheckUrlSyntax;
using pg::service::IsPrivateAddress;

CATCH_TEST_CASE("private, loopback, link-local and metadata addresses are recognised") {
  for (const char* ip :
       {"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "169.254.169.254", "100.100.100.200", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1",
        "::", "fe80::1", "fd00:ec2::254", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3",
        "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "ff02::1",
        // the spellings of issue 7's list, as the resolver hands them over
        "::ffff:7f00:1", "64:ff9b::7f00:1", "64:ff9b::127.0.0.1",
        "::ffff:0:7f00:1",  // SIIT IPv4-translated
        "::ffff:169.254.169.254",
        "64:ff9b:1::8.8.8.8",  // local-use NAT64: the operator's own network
        "::127.0.0.1",         // IPv4-compatible
        "fe80::1", "febf::1", "fec0::1", "fd12:3456::1",
        "100::1",            // discard-only
        "2001:0:4136::1",    // Teredo
        "2001:db8::1",       // documentation
        "2002:a9fe:a9fe::",  // 6to4 of the metadata address
        "192.0.0.170", "198.18.0.1", "100.64.0.1", "240.0.0.1"}) {
    CATCH_INFO(ip);
    CATCH_CHECK(IsPrivateAddress(ip));
  }
}

CATCH_TEST_CASE("public addresses are allowed") {
  for (const char* ip :
       {"8.8.8.8", "1.1.1.1", "172.32.0.1", "192.169.0.1", "100.128.0.1", "2606:4700:4700::1111",
        "::ffff:8.8.8.8", "2002:0808:0808::", "2001:4860:4860::8888", "64:ff9b::808:808"}) {
    CATCH_INFO(ip);
    CATCH_CHECK_FALSE(IsPrivateAddress(ip));
  }
}

CATCH_TEST_CASE("only absolute http(s) URLs without credentials pass the syntax check") {
  CATCH_CHECK(CheckUrlSyntax("http://example.com/a.png").ok());
  CATCH_CHECK(CheckUrlSyntax("HTTPS://example.com:8443/a.png?x=1").ok());
  for (const char* bad :
       {"file:///etc/passwd", "ftp://example.com/a", "gopher://x", "example.com/a.png",
        "http:///a.png", "http://user:pw@example.com/", "http://exa mple.com/",
        "dict://127.0.0.1:11211/", "http://example.com@127.0.0.1/", "http://@127.0.0.1/",
        "http://example.com:80@[::1]/", "http://a%40b@127.0.0.1/", "http://127.0.0.1\t/",
        "http://127.0.0.1/\r\nHost: x", "javascript:alert(1)", "HTTP:/127.0.0.1/",
        "//127.0.0.1/"}) {
    CATCH_INFO(bad);
    const absl::Status s = CheckUrlSyntax(bad);
    CATCH_CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  }
}

CATCH_TEST_CASE("allowed ranges override the guard for the addresses they cover only") {
  auto cidrs = pg::service::ParseCidrList("127.0.0.2/32, 10.1.0.0/16");
  CATCH_REQUIRE(cidrs.ok());
  CATCH_REQUIRE(cidrs->size() == 2);
  auto check = [&](const char* ip) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &in.sin_addr);
    return pg::service::CheckAddress(reinterpret_cast<sockaddr*>(&in), false, *cidrs);
  };
  CATCH_CHECK(check("127.0.0.2").ok());
  CATCH_CHECK(check("10.1.200.3").ok());
  CATCH_CHECK(check("127.0.0.1").code() == absl::StatusCode::kPermissionDenied);
  CATCH_CHECK(check("10.2.0.1").code() == absl::StatusCode::kPermissionDenied);
  CATCH_CHECK(check("8.8.8.8").ok());
  CATCH_CHECK_FALSE(pg::service::ParseCidr("10.0.0.0/33").ok());
  CATCH_CHECK_FALSE(pg::service::ParseCidr("not-an-ip").ok());
}

CATCH_TEST_CASE("the syntax check caps the URL length") {
  const std::string base = "http://example.com/";
  const size_t room = pg::service::kMaxUrlBytes - base.size();
  CATCH_CHECK(CheckUrlSyntax(base + std::string(room, 'a')).ok());
  const absl::Status s = CheckUrlSyntax(base + std::string(room + 1, 'a'));
  CATCH_CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CATCH_CHECK(std::string(s.message()).find("the limit is 8192") != std::string::npos);
}

CATCH_TEST_CASE("numeric spellings and names pass the syntax check: the connect guard judges") {
  // Deliberately not refused from the text: a resolver may read any of these as loopback, so the
  // verdict belongs to the address curl connects to (next test case).
  for (const char* url : {"http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/",
                          "http://127.1/", "http://localhost./", "http://[::ffff:7f00:1]/",
                          "http://[64:ff9b::7f00:1]/", "http://localhost/"}) {
    CATCH_INFO(url);
    CATCH_CHECK(CheckUrlSyntax(url).ok());
  }
}

namespace {

// A TCP listener on 127.0.0.1 (or ::1) that never accepts by itself; Connections() counts the
// connections that reached it (completed handshakes wait in the backlog).
class Sentinel {
 public:
  explicit Sentinel(int family) {
    fd_ = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CATCH_REQUIRE(fd_ >= 0);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&ss);
      in->sin_family = AF_INET;
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof(sockaddr_in);
    } else {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = in6addr_loopback;
      len = sizeof(sockaddr_in6);
    }
    CATCH_REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) == 0);
    CATCH_REQUIRE(listen(fd_, 16) == 0);
    CATCH_REQUIRE(getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    port_ = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                    : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  ~Sentinel() { close(fd_); }
  int port() const { return port_; }
  int Connections() {
    int n = 0;
    pollfd p{fd_, POLLIN, 0};
    while (poll(&p, 1, 200) == 1) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) break;
      close(c);
      ++n;
    }
    return n;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

absl::Status Fetch(const std::string& url, const pg::service::FetchOptions& options = {}) {
  return pg::service::FetchUrl(url, options,
                               std::chrono::steady_clock::now() + std::chrono::seconds(20))
      .status();
}

}  // namespace

CATCH_TEST_CASE("FetchUrl refuses loopback at connect time, for names and numeric spellings") {
  Sentinel v4(AF_INET);
  const std::string port = std::to_string(v4.port());
  // Each passes CheckUrlSyntax (a name, or a spelling curl or the resolver turns into 127.0.0.1);
  // the refusal must come from the address curl was about to connect to, before any connection.
  for (const std::string host :
       {"localhost", "LOCALHOST", "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1",
        "0.0.0.0", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "localhost.", "127.0.0.1."}) {
    const std::string url = "http://" + host + ":" + port + "/x.png";
    CATCH_INFO(url);
    CATCH_REQUIRE(CheckUrlSyntax(url).ok());
    const absl::Status s = Fetch(url);
    CATCH_INFO(s.ToString());
    if (host.back() == '.') {
      // A trailing dot: curl does not treat it as its built-in localhost, and whether the system
      // resolver knows the name depends on the machine (not here: "Couldn't resolve host name").
      // Either way no connection, and a resolved loopback address is refused.
      CATCH_CHECK((s.code() == absl::StatusCode::kPermissionDenied ||
                   (s.code() == absl::StatusCode::kInvalidArgument &&
                    s.message().find("resolve") != std::string::npos)));
    } else {
      CATCH_CHECK(s.code() == absl::StatusCode::kPermissionDenied);
    }
    CATCH_CHECK(v4.Connections() == 0);
  }
  // The control: with private addresses allowed the same listener is reached (the sentinel works).
  pg::service::FetchOptions allow;
  allow.allow_private = true;
  allow.connect_timeout_ms = 2000;
  allow.total_timeout_ms = 2000;
  (void)Fetch("http://127.0.0.1:" + port + "/x.png", allow);  // times out: nobody answers
  CATCH_CHECK(v4.Connections() == 1);
}

CATCH_TEST_CASE("FetchUrl refuses IPv6 loopback at connect time") {
  Sentinel v6(AF_INET6);
  const std::string url = "http://[::1]:" + std::to_string(v6.port()) + "/x.png";
  const absl::Status s = Fetch(url);
  CATCH_INFO(s.ToString());
  CATCH_CHECK(s.code() == absl::StatusCode::kPermissionDenied);
  CATCH_CHECK(v6.Connections() == 0);
}
