#include "server/registry/hub_download.h"

#include <curl/curl.h>
#include <sys/statvfs.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/common/log.h"
#include "server/common/status.h"
#include "server/registry/load_progress.h"

namespace pg::registry {
namespace fs = std::filesystem;

const char kAuthenticationMessage[] =
    "This model requires authentication. Please configure a valid Hugging Face token (HF_TOKEN or "
    "--hf_token_file, e.g. /run/secrets/hf_token) and make sure your account has accepted the "
    "model's "
    "license on huggingface.co";

namespace {

using CurlPtr = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;
using HeaderList = std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)>;

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names, of the last response
  std::string body;                            // only when no file is being written
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) r->headers.clear();  // a new response (after a redirect)
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    r->headers[name] = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return size * n;
}

// A body read into memory, cut off past `limit` (the write callback refusing data aborts the
// transfer, so a 300 MB config.json costs at most `limit` of memory).
struct SmallBody {
  Response* r;
  int64_t limit;
  bool over = false;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* b = static_cast<SmallBody*>(user);
  // An announced length past the limit is refused at the first bytes, before the buffer grows.
  int64_t announced = 0;
  auto length = b->r->headers.find("content-length");
  if (length != b->r->headers.end() && absl::SimpleAtoi(length->second, &announced) &&
      announced > b->limit) {
    b->over = true;
    return 0;
  }
  std::string* out = &b->r->body;
  if (static_cast<int64_t>(out->size() + size * n) > b->limit) {
    b->over = true;
    return 0;
  }
  if (out->empty()) {
    // One buffer of the final size (or of the limit, when no length was announced): doubling as
    // it grows would peak at about twice the limit (measured: +128 MB for a 64 MB limit). An
    // allocation this large is mapped lazily, so only the bytes written become resident.
    out->reserve(static_cast<size_t>(announced > 0 ? announced : b->limit));
  }
  out->append(data, size * n);
  return size * n;
}

// Stops a transfer once the registry load running it was cancelled or ran past its time limit.
int OnStopCheck(void*, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return LoadStopStatus().ok() ? 0 : 1;
}

size_t OnFileBody(char* data, size_t size, size_t n, void* user) {
  return std::fwrite(data, 1, size * n, static_cast<FILE*>(user));
}

struct Progress {
  std::string what;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  curl_off_t offset = 0;
  int64_t max_bytes = 0;  // the file may not grow past this (its share of the download budget)
  bool over = false;
};

int OnProgress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* p = static_cast<Progress*>(user);
  if (p->offset + now > p->max_bytes || p->offset + total > p->max_bytes) {
    p->over = true;
    return 1;
  }
  if (!LoadStopStatus().ok()) return 1;
  if (LoadProgress* lp = CurrentLoadProgress()) {
    lp->SetBytes(p->what, p->offset + now, total > 0 ? p->offset + total : 0);
  }
  const auto t = std::chrono::steady_clock::now();
  if (t - p->last > std::chrono::seconds(5)) {
    p->last = t;
    log::Info("download progress", {{"file", p->what},
                                    {"bytes_done", static_cast<int64_t>(p->offset + now)},
                                    {"bytes_total", static_cast<int64_t>(p->offset + total)}});
  }
  return 0;
}

CurlPtr NewHandle(const HubOptions& o, const std::string& url, Response* r, curl_slist* headers) {
  CurlPtr h(curl_easy_init(), &curl_easy_cleanup);
  curl_easy_setopt(h.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(h.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h.get(), CURLOPT_CONNECTTIMEOUT_MS, o.connect_timeout_ms);
  curl_easy_setopt(h.get(), CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(h.get(), CURLOPT_LOW_SPEED_TIME, o.low_speed_timeout_s);
  curl_easy_setopt(h.get(), CURLOPT_FOLLOWLOCATION, 1L);  // the Hub redirects LFS files to its CDN
  curl_easy_setopt(h.get(), CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(h.get(), CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h.get(), CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h.get(), CURLOPT_USERAGENT, "paligemma-serve/0.1");
  curl_easy_setopt(h.get(), CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(h.get(), CURLOPT_HEADERDATA, r);
  curl_easy_setopt(h.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h.get(), CURLOPT_XFERINFOFUNCTION, &OnStopCheck);
  // The token is a custom Authorization header: curl (>= 7.83) drops it when a redirect changes the
  // host, port or scheme (the Hub's LFS redirect to its CDN must not carry it). Said explicitly
  // here so that nobody turns it on; tests/integration/test_token.py checks it over the wire.
  curl_easy_setopt(h.get(), CURLOPT_UNRESTRICTED_AUTH, 0L);
  if (headers) curl_easy_setopt(h.get(), CURLOPT_HTTPHEADER, headers);
  return h;
}

HeaderList AuthHeaders(const std::string& token) {
  curl_slist* list = nullptr;
  if (!token.empty()) list = curl_slist_append(list, ("Authorization: Bearer " + token).c_str());
  return HeaderList(list, &curl_slist_free_all);
}

absl::Status StatusForHttp(long status, const std::string& what, const std::string& id) {
  if (status == 401 || status == 403) {
    return absl::PermissionDeniedError(
        absl::StrCat(kAuthenticationMessage, " (", what, ": HTTP ", status, ")"));
  }
  if (status == 404) {
    return absl::NotFoundError(
        absl::StrCat("model '", id, "' was not found on the Hub (", what, ": HTTP 404)"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": HTTP ", status));
}

std::string Megabytes(int64_t bytes) { return absl::StrCat(bytes >> 20, " MB"); }

absl::Status TooLarge(const std::string& what, int64_t limit) {
  return absl::FailedPreconditionError(
      absl::StrCat(what, " is larger than ", Megabytes(limit), "; it was not downloaded"));
}

// Small file into memory (config, index); returns the HTTP status in r. `what` names it in
// messages ("org/name/config.json"); the URL stays in the private detail.
absl::Status GetSmall(const HubOptions& o, const std::string& url, const std::string& what,
                      Response* r) {
  HeaderList headers = AuthHeaders(o.token);
  for (int attempt = 1;; ++attempt) {
    *r = Response{};
    SmallBody body{r, o.max_small_file_bytes};
    CurlPtr h = NewHandle(o, url, r, headers.get());
    curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &body);
    const CURLcode rc = curl_easy_perform(h.get());
    if (body.over) {
      r->body.clear();
      r->body.shrink_to_fit();
      return TooLarge(what, o.max_small_file_bytes);
    }
    RETURN_IF_ERROR(LoadStopStatus());
    if (rc == CURLE_OK) {
      curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &r->status);
      if (r->status < 500 || attempt >= o.attempts) return absl::OkStatus();
    } else if (attempt >= o.attempts) {
      return WithPrivateDetail(
          absl::UnavailableError(absl::StrCat("GET ", what, ": ", curl_easy_strerror(rc))),
          absl::StrCat("GET ", url));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
  }
}

// Streams url into `path` via path.incomplete, resuming from its size on each attempt; the file may
// not grow past max_bytes.
absl::Status GetToFile(const HubOptions& o, const std::string& url, const std::string& token,
                       const std::string& path, const std::string& what, const std::string& id,
                       int64_t max_bytes) {
  const std::string partial = path + ".incomplete";
  HeaderList headers = AuthHeaders(token);
  std::string last_error;
  std::error_code ec;
  for (int attempt = 1; attempt <= o.attempts; ++attempt) {
    const curl_off_t offset =
        fs::exists(partial, ec) ? static_cast<curl_off_t>(fs::file_size(partial, ec)) : 0;
    FILE* f = std::fopen(partial.c_str(), offset > 0 ? "ab" : "wb");
    if (!f) {
      return WithPrivateDetail(absl::InternalError(absl::StrCat("cannot write ", what)),
                               absl::StrCat("cannot write ", partial));
    }
    Response r;
    Progress progress{what};
    progress.offset = offset;
    progress.max_bytes = max_bytes;
    CurlPtr h = NewHandle(o, url, &r, headers.get());
    curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, &OnFileBody);
    curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h.get(), CURLOPT_XFERINFOFUNCTION, &OnProgress);
    curl_easy_setopt(h.get(), CURLOPT_XFERINFODATA, &progress);
    // Only a 2xx body is written; an error page must not land in the blob.
    curl_easy_setopt(h.get(), CURLOPT_FAILONERROR, 1L);
    if (offset > 0) {
      curl_easy_setopt(h.get(), CURLOPT_RESUME_FROM_LARGE, offset);
      log::Info("download resuming", {{"file", what}, {"offset", static_cast<int64_t>(offset)}});
    } else {
      log::Info("download", {{"file", what}});
    }
    const CURLcode rc = curl_easy_perform(h.get());
    std::fclose(f);
    if (progress.over) {
      fs::remove(partial, ec);
      return TooLarge(what, max_bytes);
    }
    if (absl::Status stop = LoadStopStatus(); !stop.ok()) {
      fs::remove(partial, ec);
      return stop;
    }
    long status = 0;
    curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && offset > 0 && status == 200) {
      // The server ignored the Range and sent the whole file after our partial one: start over.
      fs::remove(partial, ec);
      last_error = "server ignored the resume request";
      continue;
    }
    if (rc == CURLE_OK) {
      fs::rename(partial, path, ec);
      if (ec) {
        return WithPrivateDetail(absl::InternalError(absl::StrCat("cannot store ", what)),
                                 absl::StrCat("rename ", partial, ": ", ec.message()));
      }
      log::Info("download done",
                {{"file", what}, {"bytes", static_cast<int64_t>(fs::file_size(path, ec))}});
      return absl::OkStatus();
    }
    if (rc == CURLE_HTTP_RETURNED_ERROR) {
      if (status == 416) {  // our partial file is longer than the resource: start over
        fs::remove(partial, ec);
        continue;
      }
      if (status < 500) return StatusForHttp(status, what, id);
    }
    last_error = curl_easy_strerror(rc);
    log::Warn(
        "download interrupted",
        {{"file", what}, {"error", last_error}, {"attempt", attempt}, {"attempts", o.attempts}});
    std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
  }
  return absl::UnavailableError(
      absl::StrCat("download of ", what, " failed after ", o.attempts, " attempts: ", last_error));
}

std::string BlobName(const Response& head, const std::string& fallback) {
  // huggingface_hub names blobs by the LFS sha256 (X-Linked-Etag) or the git blob id (ETag).
  auto it = head.headers.find("x-linked-etag");
  if (it == head.headers.end()) it = head.headers.find("etag");
  if (it == head.headers.end()) return fallback;
  std::string name = it->second;
  if (name.rfind("W/", 0) == 0) name.erase(0, 2);
  if (!name.empty() && name.front() == '"') name.erase(0, 1);
  if (!name.empty() && name.back() == '"') name.pop_back();
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return fallback;
  }
  return name.empty() ? fallback : name;
}

// Paths a download wrote, removed again if it fails (a refused or failed download must not leave
// gigabytes behind); files that were there before are not listed.
struct Written {
  std::vector<std::string> files;
  std::vector<std::string> dirs;  // removed when empty, deepest first
};

void RemoveWritten(const Written& w) {
  std::error_code ec;
  for (const auto& f : w.files) {
    fs::remove(f, ec);
    fs::remove(f + ".incomplete", ec);
  }
  for (const auto& d : w.dirs) fs::remove(d, ec);  // only if empty
}

// One repo file into blobs/ + snapshots/<commit>/<file> (a relative symlink, as huggingface_hub
// makes), at most max_bytes.
absl::Status FetchRepoFile(const HubOptions& o, const std::string& id, const std::string& repo_dir,
                           const std::string& commit, const std::string& file, const Response& head,
                           int64_t max_bytes, Written* written) {
  std::error_code ec;
  const std::string snapshot = repo_dir + "/snapshots/" + commit;
  const std::string link = snapshot + "/" + file;
  if (fs::exists(link, ec)) return absl::OkStatus();
  const std::string blob = BlobName(head, absl::StrCat(commit, "-", file));
  fs::create_directories(repo_dir + "/blobs", ec);
  fs::create_directories(snapshot, ec);
  const std::string blob_path = repo_dir + "/blobs/" + blob;
  if (!fs::exists(blob_path, ec)) {
    written->files.push_back(blob_path);
    const std::string url = absl::StrCat(o.endpoint, "/", id, "/resolve/", commit, "/", file);
    RETURN_IF_ERROR(
        GetToFile(o, url, o.token, blob_path, absl::StrCat(id, "/", file), id, max_bytes));
  }
  written->files.push_back(link);
  fs::create_symlink("../../blobs/" + blob, link, ec);
  if (ec && !fs::exists(link)) {
    return WithPrivateDetail(absl::InternalError(absl::StrCat("cannot store ", id, "/", file)),
                             absl::StrCat("symlink ", link, ": ", ec.message()));
  }
  return absl::OkStatus();
}

// The size a HEAD answer announces: X-Linked-Size on the Hub's LFS redirect, else Content-Length;
// -1 when neither is there.
int64_t AnnouncedSize(const Response& head) {
  for (const char* name : {"x-linked-size", "content-length"}) {
    auto it = head.headers.find(name);
    int64_t v = 0;
    if (it != head.headers.end() && absl::SimpleAtoi(it->second, &v) && v >= 0) return v;
  }
  return -1;
}

bool IsWeightsFile(const std::string& file) { return absl::EndsWith(file, ".safetensors"); }

// Free bytes on the file system holding `dir` (or its nearest existing parent); -1 if unknown.
int64_t FreeBytes(fs::path dir) {
  std::error_code ec;
  while (!dir.empty() && !fs::exists(dir, ec)) dir = dir.parent_path();
  struct statvfs st {};
  if (dir.empty() || statvfs(dir.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

absl::Status DownloadRepoFiles(const HubOptions& o, const std::string& id,
                               const std::string& repo_dir, Written* written) {
  auto url = [&](const std::string& rev, const std::string& file) {
    return absl::StrCat(o.endpoint, "/", id, "/resolve/", rev, "/", file);
  };
  // config.json first: it answers "does the repo exist / do we have access" and names the commit.
  Response config;
  RETURN_IF_ERROR(GetSmall(o, url(o.revision, "config.json"), id + "/config.json", &config));
  if (config.status != 200) return StatusForHttp(config.status, id + "/config.json", id);
  std::string commit = o.revision;
  if (auto it = config.headers.find("x-repo-commit"); it != config.headers.end()) {
    commit = it->second;
  }
  for (char c : commit) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return absl::UnavailableError("the Hub sent an invalid commit id");
    }
  }
  log::Info("download revision", {{"model", id}, {"revision", o.revision}, {"commit", commit}});

  std::vector<std::string> files = {"config.json", "tokenizer.json"};
  Response index;
  const std::string index_name = id + "/model.safetensors.index.json";
  RETURN_IF_ERROR(GetSmall(o, url(commit, "model.safetensors.index.json"), index_name, &index));
  if (index.status == 200) {
    files.push_back("model.safetensors.index.json");
    try {
      std::set<std::string> shards;
      const nlohmann::json parsed = nlohmann::json::parse(index.body);  // outlives the loop below
      for (const auto& entry : parsed.at("weight_map").items()) {
        shards.insert(entry.value().get<std::string>());
        if (static_cast<int>(shards.size()) > o.max_shards) {
          return absl::FailedPreconditionError(absl::StrCat(
              index_name, " names more than ", o.max_shards, " shards; nothing was downloaded"));
        }
      }
      for (const auto& s : shards) {
        if (s.find('/') != std::string::npos || s.rfind(".", 0) == 0) {
          return absl::UnavailableError(absl::StrCat("safetensors index names a bad shard: ", s));
        }
        files.push_back(s);
      }
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("bad model.safetensors.index.json: ", e.what()));
    }
  } else if (index.status == 404) {
    files.push_back("model.safetensors");
  } else {
    return StatusForHttp(index.status, index_name, id);
  }
  index = Response{};
  config = Response{};
  // Optional files: used when present.
  for (const char* optional : {"preprocessor_config.json", "tokenizer_config.json",
                               "special_tokens_map.json", "generation_config.json"}) {
    Response r;
    RETURN_IF_ERROR(GetSmall(o, url(commit, optional), absl::StrCat(id, "/", optional), &r));
    if (r.status == 200) files.push_back(optional);
  }

  // HEAD every file first: the blob names, and the sizes that must fit the download limit and the
  // disk before a byte of weights is fetched.
  std::vector<Response> heads(files.size());
  int64_t total = 0, missing = 0;
  std::error_code ec;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& file = files[i];
    Response& head = heads[i];
    HeaderList headers = AuthHeaders(o.token);
    CurlPtr h = NewHandle(o, url(commit, file), &head, headers.get());
    curl_easy_setopt(h.get(), CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h.get(), CURLOPT_FOLLOWLOCATION, 0L);  // X-Linked-Etag is on the redirect
    const CURLcode rc = curl_easy_perform(h.get());
    RETURN_IF_ERROR(LoadStopStatus());
    if (rc != CURLE_OK) {
      return absl::UnavailableError(
          absl::StrCat("HEAD ", id, "/", file, ": ", curl_easy_strerror(rc)));
    }
    curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &head.status);
    if (head.status >= 400) return StatusForHttp(head.status, id + "/" + file, id);
    const int64_t size = AnnouncedSize(head);
    if (size > 0) {
      if (!IsWeightsFile(file) && size > o.max_small_file_bytes) {
        return TooLarge(absl::StrCat(id, "/", file), o.max_small_file_bytes);
      }
      total += size;
      const std::string blob = repo_dir + "/blobs/" + BlobName(head, commit + "-" + file);
      if (!fs::exists(blob, ec)) missing += size;
    }
  }
  if (total > o.max_download_bytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model ", id, " is ", Megabytes(total), ", more than this server downloads (",
        Megabytes(o.max_download_bytes), ", --max_download_gb); nothing was downloaded"));
  }
  const int64_t free = FreeBytes(repo_dir);
  if (free >= 0 && missing > free) {
    return WithPrivateDetail(
        absl::FailedPreconditionError(absl::StrCat("not enough free disk to download model ", id,
                                                   " (", Megabytes(missing),
                                                   " needed); nothing was downloaded")),
        absl::StrCat("free on the file system of ", repo_dir, ": ", Megabytes(free)));
  }

  // A repo dir made by this download is removed again if it fails (RemoveWritten: when empty).
  for (const std::string& d : {repo_dir + "/snapshots/" + commit, repo_dir + "/snapshots",
                               repo_dir + "/blobs", repo_dir + "/refs", repo_dir}) {
    if (!fs::exists(d, ec)) written->dirs.push_back(d);
  }
  int64_t downloaded = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    // The budget left covers what the HEAD answers did not announce (or announced wrongly).
    int64_t max_bytes = o.max_download_bytes - downloaded;
    if (!IsWeightsFile(files[i])) max_bytes = std::min(max_bytes, o.max_small_file_bytes);
    RETURN_IF_ERROR(FetchRepoFile(o, id, repo_dir, commit, files[i], heads[i], max_bytes, written));
    downloaded +=
        static_cast<int64_t>(fs::file_size(repo_dir + "/snapshots/" + commit + "/" + files[i], ec));
  }
  // refs/main last: the cache folder counts as complete (resolver) only once every file is there.
  fs::create_directories(repo_dir + "/refs", ec);
  const std::string ref = repo_dir + "/refs/" + o.revision;
  {
    std::ofstream out(ref + ".tmp");
    out << commit;
    if (!out) {
      return WithPrivateDetail(absl::InternalError(absl::StrCat("cannot store ", id)),
                               "cannot write " + ref);
    }
  }
  fs::rename(ref + ".tmp", ref, ec);
  return absl::OkStatus();
}

}  // namespace

absl::Status DownloadRepo(const HubOptions& o, const std::string& id, const std::string& repo_dir) {
  Written written;
  absl::Status s = DownloadRepoFiles(o, id, repo_dir, &written);
  if (!s.ok()) {
    RemoveWritten(written);
    log::Warn("download failed; removed what it wrote",
              {{"model", id}, {"files", static_cast<int64_t>(written.files.size())}});
  }
  return s;
}

absl::Status DownloadFile(const HubOptions& options, const std::string& url,
                          const std::string& path, const std::string& what) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  absl::Status s =
      GetToFile(options, url, /*token=*/"", path, what, what, options.max_download_bytes);
  if (!s.ok()) fs::remove(path + ".incomplete", ec);
  return s.ok() ? s : WithPrivateDetail(s, absl::StrCat(PrivateDetail(s), " url ", url));
}

}  // namespace pg::registry
