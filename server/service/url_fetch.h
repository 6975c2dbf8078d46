// Fetches a request's image_url with libcurl under the server's limits: http/https only (also after
// redirects), a size cap enforced while streaming, connect and total timeouts (and the request's
// deadline), a bounded number of redirects, and the SSRF guard of url_policy.h applied to every
// connection curl opens.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/service/url_policy.h"

namespace pg::service {

struct FetchOptions {
  int64_t max_bytes = 20 * 1024 * 1024;
  long connect_timeout_ms = 5000;
  long total_timeout_ms = 20000;
  long max_redirects = 3;
  bool allow_private = false;  // --allow_private_urls
  std::vector<Cidr> allowed;   // --allowed_url_cidrs: private ranges allowed anyway
};

// The body of a 2xx answer. InvalidArgument for a bad URL, HTTP error, too many redirects, oversize
// body or unreachable host; PermissionDenied for a refused address; DeadlineExceeded when
// `deadline` passed; Cancelled when `cancelled()` turned true.
absl::StatusOr<std::string> FetchUrl(const std::string& url, const FetchOptions& options,
                                     std::chrono::steady_clock::time_point deadline,
                                     const std::function<bool()>& cancelled = {});

}  // namespace pg::service
