// The MCP endpoint (/mcp on the admin listener, --mcp-url): Streamable HTTP with JSON responses,
// an OAuth 2.1 resource server (bearer tokens verified with the gateway's keys, audience = the
// endpoint's URL, RFC 9728 metadata), and four tools — query, explain, list_tables,
// describe_table — whose SQL runs through a pgwarden session of the caller's own (identity,
// agent, role, policy, approvals, masking, recording), logged in with a one-time internal login.
// Each MCP session is bound to its token's subject and agents; calls share pooled connections
// (core/mcp_link.h), each passing to the call's caller before it runs.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/mcp_link.h"
#include "policy/jwt.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace pgwarden::policy {
class InternalLogins;
struct AuthConfig;
}  // namespace pgwarden::policy

namespace pgwarden::core {

struct Control;
struct McpSession;

struct McpOptions {
  std::string url;  // the endpoint's public URL: the tokens' audience and the metadata's resource
  std::shared_ptr<policy::JwksSource> jwks;
  policy::JwtOptions jwt;  // issuers, claims; audiences = {url}
  std::shared_ptr<policy::InternalLogins> logins;
  const policy::AuthConfig* auth = nullptr;  // role mappings (the database to log in to)
  std::string gateway_host;                  // pgwarden's listener, for the internal logins
  int gateway_port = 0;
  unsigned max_sessions = 64;
  unsigned pool_per_role = 4;          // idle connections kept per mapped role and database
  std::int64_t pool_idle_ms = 60'000;  // an idle pooled connection is closed after this
  unsigned max_calls = 32;             // tool calls running at once (half the admin connections)
  int call_timeout_s = 60;             // a tool call (a held statement waits at most this long)
  std::int64_t idle_timeout_s = 900;   // an MCP session unused this long ends
  std::size_t max_rows = 1000;         // the most a call may ask for (default 100)
  std::size_t max_result_bytes = 256 * 1024;
};

class McpServer {
 public:
  McpServer(Control& control, McpOptions options);
  ~McpServer();
  // Adds /mcp and /.well-known/oauth-protected-resource[/mcp] to the admin listener's routes.
  void install(httplib::Server& s);
  std::size_t sessions() const;

 private:
  void post(const httplib::Request& req, httplib::Response& res);
  void end(const httplib::Request& req, httplib::Response& res);
  // The token's identity, or nullopt with 401/403 set.
  std::optional<policy::CallerIdentity> authenticate(const httplib::Request& req,
                                                     httplib::Response& res);
  std::shared_ptr<McpSession> find(const std::string& id);
  void sweep();
  std::string metadata_url() const;

  Control& control_;
  McpOptions options_;
  std::string path_;  // the URL's path (/mcp)
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<McpSession>> sessions_;
  std::atomic<unsigned> in_flight_{0};
  std::map<std::string, unsigned> calls_of_;  // tool calls running or waiting, by principal
  LinkPool pool_;                             // connections the calls share
  // Every second, with or without requests: idle MCP sessions end and idle pooled
  // connections close (what a caller left in its session goes with it). Stopped first.
  std::condition_variable_any janitor_cv_;
  std::mutex janitor_mu_;
  std::jthread janitor_;
};

}  // namespace pgwarden::core
