// The SSRF guard's address classification and URL syntax checks (the per-connection enforcement is
// covered over the wire by tests/integration/test_image_url.py).
#include "server/service/url_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>

using pg::service::CheckUrlSyntax;
using pg::service::IsPrivateAddress;

CATCH_TEST_CASE("private, loopback, link-local and metadata addresses are recognised") {
  for (const char* ip : {"127.0.0.1",
                         "127.1.2.3",
                         "10.0.0.1",
                         "172.16.0.1",
                         "172.31.255.255",
                         "192.168.1.1",
                         "169.254.169.254",
                         "100.100.100.200",
                         "0.0.0.0",
                         "224.0.0.1",
                         "255.255.255.255",
                         "::1",
                         "::",
                         "fe80::1",
                         "fd00:ec2::254",
                         "fc00::1",
                         "::ffff:127.0.0.1",
                         "::ffff:10.1.2.3",
                         "64:ff9b::a9fe:a9fe",
                         "2002:7f00:1::",
                         "ff02::1"}) {
    CATCH_INFO(ip);
    CATCH_CHECK(IsPrivateAddress(ip));
  }
}

CATCH_TEST_CASE("public addresses are allowed") {
  for (const char* ip : {"8.8.8.8", "1.1.1.1", "172.32.0.1", "192.169.0.1", "100.128.0.1",
                         "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:0808:0808::"}) {
    CATCH_INFO(ip);
    CATCH_CHECK_FALSE(IsPrivateAddress(ip));
  }
}

CATCH_TEST_CASE("only absolute http(s) URLs without credentials pass the syntax check") {
  CATCH_CHECK(CheckUrlSyntax("http://example.com/a.png").ok());
  CATCH_CHECK(CheckUrlSyntax("HTTPS://example.com:8443/a.png?x=1").ok());
  for (const char* bad : {"file:///etc/passwd", "ftp://example.com/a", "gopher://x",
                          "example.com/a.png", "http:///a.png", "http://user:pw@example.com/",
                          "http://exa mple.com/", "dict://127.0.0.1:11211/"}) {
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
