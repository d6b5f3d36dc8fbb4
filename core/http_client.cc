#include "core/http_client.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

#include "protocol/http.h"

namespace pgwarden::core {

namespace {

struct Sink {
  std::string* body;
  std::size_t max;
  bool too_large = false;
};

std::size_t on_data(char* data, std::size_t size, std::size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const std::size_t len = size * n;
  if (sink->body->size() + len > sink->max) {
    sink->too_large = true;
    return 0;  // aborts the transfer
  }
  sink->body->append(data, len);
  return len;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* cancel = static_cast<const std::atomic<bool>*>(user);
  return cancel != nullptr && cancel->load(std::memory_order_relaxed) ? 1 : 0;
}

}  // namespace

void http_client_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpReply http_call(const HttpCall& call) {
  http_client_init();
  HttpReply reply;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    reply.error = "cannot start an HTTP client";
    return reply;
  }
  CURL* c = curl.get();
  Sink sink{&reply.body, call.max_response};
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(call.timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(call.timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(call.max_response));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "pgwarden");
  if (!call.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, call.ca_file.c_str());
  // Plain http is allowed for loopback hosts only: such a call never goes through a proxy (which
  // would carry it, signatures and keys included, in the clear, and could answer for the host).
  if (call.url.rfind("http://", 0) == 0) curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  if (call.cancel != nullptr) {
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(call.cancel));
  }
  curl_slist* headers = nullptr;
  for (const auto& h : call.headers) headers = curl_slist_append(headers, h.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(headers,
                                                                          curl_slist_free_all);
  if (headers != nullptr) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  if (call.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, call.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
  }
  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    reply.body.clear();
    reply.error = sink.too_large ? "the response is larger than " +
                                       std::to_string(call.max_response) + " bytes"
                  : error[0] != '\0' ? std::string(error)
                                     : std::string(curl_easy_strerror(rc));
    return reply;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  return reply;
}

std::string url_for_log(std::string_view url, bool keep_path) {
  const auto u = protocol::parse_url(url);
  if (!u) return "(a URL that does not parse)";
  std::string out = u->tls ? "https://" : "http://";
  const bool v6 = u->host.find(':') != std::string::npos;
  if (v6) out += '[';
  out += u->host;
  if (v6) out += ']';
  out += ':';
  out += std::to_string(u->port);
  const std::string_view target = u->target;
  const std::size_t query = target.find('?');
  if (!keep_path) {
    out += target == "/" ? "/" : "/...";
  } else {
    out += target.substr(0, query);
    if (query != std::string_view::npos) out += "?...";
  }
  return out;
}

}  // namespace pgwarden::core
