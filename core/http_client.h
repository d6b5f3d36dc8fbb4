// Outgoing HTTP(S) off the data path (the JWKS fetcher, approval webhooks) through Debian's
// libcurl: a total time limit, a response size limit, no redirects, certificates verified
// (against `ca_file` when set), and the proxy from the environment (https_proxy, no_proxy...),
// as curl does, for https only (plain http, allowed for loopback hosts, never uses a proxy).
// Blocking: call it from a background thread only.
#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

namespace pgwarden::core {

struct HttpCall {
  std::string url;
  std::string method = "GET";        // GET or POST
  std::string body;                  // POST
  std::vector<std::string> headers;  // "Name: value"
  std::string ca_file;               // "" = the system's CAs
  double timeout_s = 10;             // the whole call, connection included
  std::size_t max_response = 1 << 20;
  const std::atomic<bool>* cancel = nullptr;  // set: the call is abandoned at once
};

struct HttpReply {
  long status = 0;  // 0 when no response arrived (then `error` says why)
  std::string body;
  std::string error;  // empty on a response (whatever its status)
};

// Call once before any thread runs (curl_global_init).
void http_client_init();

HttpReply http_call(const HttpCall& call);

// A URL as the log shows it: scheme, host, port and, with `keep_path`, the path; never the query
// (it may carry a key). Webhook URLs keep their secret in the path (Slack, Teams, Discord), so
// theirs is shown as "/...".
std::string url_for_log(std::string_view url, bool keep_path);

}  // namespace pgwarden::core
