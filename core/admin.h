// The admin API (--admin-listen): GET /healthz and /readyz for load balancers (no token); every
// other endpoint takes `Authorization: Bearer <OIDC token>` verified like SQL callers' tokens
// (same keys and issuer; --admin-audience), and the policy says who may do what: its "admins"
// groups reload and see everything, a rule's "approvers" decide what the rule holds. GET /metrics
// also takes a static scrape token (--metrics-token-file). Host and Origin are checked (DNS
// rebinding, cross-site requests). Handlers run on the HTTP server's threads, never on a core;
// they reach sessions only through the Approvals registry and the cores' mailboxes.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/address.h"
#include "core/admin_query.h"
#include "core/approvals.h"
#include "policy/jwt.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace pgwarden::core {

struct Control;
class AdminHttpServer;
class McpServer;
class TlsContext;

struct AdminOptions {
  std::function<std::string()> reload;       // reloads the policy: an error text, or empty
  std::shared_ptr<const TlsContext> tls;     // null: plain HTTP (loopback only)
  std::shared_ptr<policy::JwksSource> jwks;  // null: no bearer token is accepted
  policy::JwtOptions jwt;
  std::string metrics_token;       // empty: /metrics needs an admin's bearer token
  std::vector<std::string> hosts;  // extra Host names (besides the listen address)
  unsigned max_connections = 64;
  std::shared_ptr<McpServer> mcp;  // null: no MCP endpoint
};

class AdminServer {
 public:
  AdminServer(const Address& listen, Control& control, AdminOptions options);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  const std::string& bound() const noexcept { return bound_; }  // "127.0.0.1:PORT"

 private:
  void routes();
  bool host_allowed(const httplib::Request& req) const;
  // The caller a bearer token proves, or nullopt with 401 set on `res`.
  std::optional<AdminCaller> authenticate(const httplib::Request& req, httplib::Response& res);
  // authenticate(), and the caller must be in the policy's admins (else 403 naming `what`).
  std::optional<AdminCaller> admin(const httplib::Request& req, httplib::Response& res,
                                   const char* what);
  // Asks every core (through its mailbox) and waits up to 2 s for each answer; nullopt (and 503
  // on `res`) when a core did not answer.
  std::optional<std::vector<std::string>> ask_cores(AdminQuery::Kind kind, std::uint64_t session,
                                                    const std::string& name,
                                                    const std::string& message,
                                                    httplib::Response& res);
  void session_routes();
  // Records an administrator's action in core 0's recording (and nothing when recording is off).
  void record(const AdminCaller& who, const httplib::Request& req, std::string action,
              std::string target, std::string result, std::string reason = {});
  std::string metrics() const;

  Control& control_;
  AdminOptions options_;
  std::unique_ptr<AdminHttpServer> http_;
  std::string bound_;
  std::string bound_host_;           // the listen address's host part, lower case
  std::set<std::string> local_ips_;  // addresses a Host header may name
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace pgwarden::core
