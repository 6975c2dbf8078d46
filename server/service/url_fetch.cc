#include "server/service/url_fetch.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <memory>

#include "absl/strings/str_cat.h"

namespace pg::service {
namespace {

struct Transfer {
  const FetchOptions* options;
  const std::function<bool()>* cancelled;
  std::string body;
  absl::Status refused;  // set by the socket guard
  bool too_large = false;
  bool was_cancelled = false;
};

// Every connection (first hop, redirects, each resolved address) passes here with the resolved
// address, before a socket exists: the verdict is on the address connect() will use, so a name
// that resolves differently later (DNS rebinding) or a numeric spelling curl normalises cannot slip
// past.
curl_socket_t OpenSocket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(user);
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
  absl::Status s = CheckAddress(&address->addr, t->options->allow_private, t->options->allowed);
  if (!s.ok()) {
    t->refused = s;
    return CURL_SOCKET_BAD;
  }
  // CLOEXEC: the server spawns the exporter; a fetch's socket must not leak into it.
  return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (static_cast<int64_t>(t->body.size() + size * n) > t->options->max_bytes) {
    t->too_large = true;
    return 0;  // aborts the transfer
  }
  t->body.append(data, size * n);
  return size * n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (*t->cancelled && (*t->cancelled)()) {
    t->was_cancelled = true;
    return 1;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::string> FetchUrl(const std::string& url, const FetchOptions& options,
                                     std::chrono::steady_clock::time_point deadline,
                                     const std::function<bool()>& cancelled) {
  if (absl::Status s = CheckUrlSyntax(url); !s.ok()) return s;
  using namespace std::chrono;
  const auto now = steady_clock::now();
  if (now >= deadline)
    return absl::DeadlineExceededError("deadline exceeded before fetching image_url");
  const long left_ms = static_cast<long>(
      std::min<int64_t>(duration_cast<milliseconds>(deadline - now).count(), 1L << 30));
  const bool deadline_first = left_ms < options.total_timeout_ms;

  Transfer t{&options, &cancelled};
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> h(curl_easy_init(), &curl_easy_cleanup);
  CURL* c = h.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, options.max_redirects);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min(options.connect_timeout_ms, left_ms));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   std::max(1L, std::min(options.total_timeout_ms, left_ms)));
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_bytes));
  // A proxy from the environment would make the guard check the proxy's address, not the target's.
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, &OpenSocket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "paligemma-serve/0.1");
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING,
                   "");  // identity/gzip; the cap applies after decoding

  const CURLcode rc = curl_easy_perform(c);
  if (!t.refused.ok()) return t.refused;
  if (t.was_cancelled) return absl::CancelledError("request cancelled while fetching image_url");
  if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    return absl::InvalidArgumentError(
        absl::StrCat("image_url body is larger than the limit of ", options.max_bytes, " bytes"));
  }
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    if (deadline_first)
      return absl::DeadlineExceededError("deadline exceeded while fetching image_url");
    return absl::InvalidArgumentError(
        absl::StrCat("fetching image_url timed out after ", options.total_timeout_ms, " ms"));
  }
  if (rc == CURLE_TOO_MANY_REDIRECTS) {
    return absl::InvalidArgumentError(
        absl::StrCat("image_url redirected more than ", options.max_redirects, " times"));
  }
  if (rc == CURLE_UNSUPPORTED_PROTOCOL) {
    return absl::InvalidArgumentError("image_url redirected to a scheme other than http/https");
  }
  if (rc != CURLE_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("could not fetch image_url: ", curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) {
    return absl::InvalidArgumentError(absl::StrCat("image_url answered HTTP ", status));
  }
  return std::move(t.body);
}

}  // namespace pg::service
