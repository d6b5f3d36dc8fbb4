// The admin listener's HTTP transport: cpp-httplib (Debian's libcpp-httplib) parses requests and
// routes them; this class owns the connections. Each connection gets its own thread (up to
// --admin-max-connections, plus a few that may only carry a health probe), a deadline for each
// whole request and each whole response (not only per read), a byte budget per request, a
// lifetime, optional TLS, and a keep-alive limit, so a slow or oversized request holds nothing
// but its own connection: /healthz and everyone else's requests go on. Off the data path.
#pragma once

#include <httplib.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace pgwarden::core {

class TlsContext;

struct AdminHttpLimits {
  double request_s = 10;   // from a request's first byte (or the connection) to its last
  double response_s = 10;  // to write one response
  // Idle time between requests on one connection, as advertised in `Keep-Alive: timeout=`. The
  // connection stays open twice as long: a client's idle timer may fire late (undici's coarse
  // timers fall behind on a loaded host), and a request written to a connection the server has
  // just closed fails at the client with no answer at all.
  double keep_alive_s = 5;
  double connection_s = 60;     // a connection's whole life (then the client reconnects)
  unsigned max_requests = 100;  // per connection
  unsigned max_connections = 64;
  // Beyond max_connections, this many more may each carry one GET /healthz or /readyz, read
  // within probe_s; anything else over the cap is answered 503 or closed.
  unsigned probe_slots = 16;
  double probe_s = 2;
  std::size_t max_body = 64 * 1024;
  std::size_t max_request_bytes = 16 * 1024 + 64 * 1024;  // header block and body together
};

// Sets a response's status and body.
void http_reply(httplib::Response& res, int status, const std::string& body,
                const char* type = "text/plain; charset=utf-8");
// The token of an `Authorization: Bearer ...` header, or "".
std::string bearer_token(const httplib::Request& req);

class AdminHttpServer final : public httplib::Server {
 public:
  // `tls` null: plain HTTP.
  AdminHttpServer(const AdminHttpLimits& limits, std::shared_ptr<const TlsContext> tls);
  ~AdminHttpServer() override;

  unsigned connections() const noexcept { return active_.load(std::memory_order_relaxed); }
  // After binding: a listen backlog that absorbs a burst of connections (httplib's is 5, and a
  // dropped SYN delays a health probe by a second or more).
  void widen_backlog();

 private:
  bool process_and_close_socket(socket_t sock) override;

  AdminHttpLimits limits_;
  std::shared_ptr<const TlsContext> tls_;
  std::atomic<unsigned> active_{0};
};

}  // namespace pgwarden::core
