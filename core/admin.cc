#include "core/admin.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/log.h"
#include "core/worker.h"

namespace pgwarden::core {

namespace {

constexpr std::size_t kMaxRequest = 8192;

void send_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

void respond(int fd, int status, const char* reason, const std::string& body,
             const char* type = "text/plain; charset=utf-8") {
  send_all(fd, "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + type +
                   "\r\nContent-Length: " + std::to_string(body.size()) +
                   "\r\nConnection: close\r\n\r\n" + body);
}

}  // namespace

AdminServer::AdminServer(const Address& listen, Control& control,
                         std::function<std::string()> reload)
    : control_(control), reload_(std::move(reload)) {
  fd_ = ::socket(listen.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd_ < 0 || ::bind(fd_, listen.sa(), listen.len) != 0 || ::listen(fd_, 16) != 0) {
    const int e = errno;
    if (fd_ >= 0) ::close(fd_);
    throw std::runtime_error("--admin-listen " + listen.text + ": " + std::strerror(e));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  bound_ = format_address(reinterpret_cast<sockaddr*>(&addr), len);
  thread_ = std::thread([this] { run(); });
}

AdminServer::~AdminServer() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
}

void AdminServer::run() {
  while (!stop_.load()) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) != 1) continue;
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    timeval tv{2, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    handle(c);
    ::close(c);
  }
}

void AdminServer::handle(int fd) {
  std::string req;
  char buf[2048];
  while (req.find("\r\n\r\n") == std::string::npos && req.size() < kMaxRequest) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    req.append(buf, static_cast<std::size_t>(n));
  }
  const std::size_t sp1 = req.find(' ');
  const std::size_t sp2 = sp1 == std::string::npos ? sp1 : req.find(' ', sp1 + 1);
  if (sp2 == std::string::npos || req.find("\r\n\r\n") == std::string::npos) {
    respond(fd, 400, "Bad Request", "malformed request\n");
    return;
  }
  const std::string method = req.substr(0, sp1);
  const std::string path = req.substr(sp1 + 1, sp2 - sp1 - 1);
  if (path == "/healthz" && method == "GET") {
    respond(fd, 200, "OK", "ok\n");
  } else if (path == "/readyz" && method == "GET") {
    std::string why;
    if (control_.phase.load() != Control::Running) why += "draining\n";
    for (const Worker* w : control_.workers) {
      if (w->stats().recording_failed.get() != 0) {
        why += "recording failing on core " + std::to_string(w->index()) + "\n";
      }
    }
    if (why.empty()) {
      respond(fd, 200, "OK", "ready\n");
    } else {
      respond(fd, 503, "Service Unavailable", why);
    }
  } else if (path == "/metrics" && method == "GET") {
    respond(fd, 200, "OK", metrics(), "text/plain; version=0.0.4");
  } else if (path == "/reload" && method == "POST") {
    const std::string error = reload_();
    if (error.empty()) {
      respond(fd, 200, "OK", "policy reloaded\n");
    } else {
      respond(fd, 422, "Unprocessable Entity", "keeping the old policy: " + error + "\n");
    }
  } else if (path == "/approvals" && method == "GET") {
    respond(fd, 200, "OK", control_.approvals != nullptr ? control_.approvals->list_json() : "[]\n",
            "application/json");
  } else if (path.rfind("/approvals/", 0) == 0 && method == "POST" &&
             control_.approvals != nullptr) {
    // /approvals/ID/approve or /approvals/ID/deny, optionally ?by=NAME (recorded as approver).
    std::string rest = path.substr(11);
    std::string by;
    if (const std::size_t q = rest.find('?'); q != std::string::npos) {
      const std::string query = rest.substr(q + 1);
      rest.resize(q);
      if (query.rfind("by=", 0) == 0) by = query.substr(3, 64);
    }
    for (char& ch : by) {
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '@' && ch != '.' && ch != '-' &&
          ch != '_') {
        ch = '_';
      }
    }
    const std::size_t slash = rest.find('/');
    const std::string verb = slash == std::string::npos ? "" : rest.substr(slash + 1);
    std::uint64_t id = 0;
    const std::string digits = rest.substr(0, slash);
    const bool numeric = !digits.empty() && digits.size() < 20 &&
                         digits.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) id = std::stoull(digits);
    if (!numeric || (verb != "approve" && verb != "deny")) {
      respond(fd, 404, "Not Found", "use POST /approvals/ID/approve or /approvals/ID/deny\n");
    } else if (control_.approvals->decide(id, verb == "approve",
                                          by.empty() ? "the admin endpoint" : by)) {
      respond(fd, 200, "OK", verb == "approve" ? "approved\n" : "denied\n");
    } else {
      respond(fd, 404, "Not Found", "no pending approval " + digits + "\n");
    }
  } else if (path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/reload") {
    respond(fd, 405, "Method Not Allowed", "method not allowed\n");
  } else {
    respond(fd, 404, "Not Found", "not found\n");
  }
}

std::string AdminServer::metrics() const {
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
    const Counter WorkerStats::*counter;
  };
  static const Metric kMetrics[] = {
      {"pgwarden_sessions_accepted_total", "counter", "Client connections accepted.",
       &WorkerStats::accepted},
      {"pgwarden_sessions", "gauge", "Client sessions open now.", &WorkerStats::sessions},
      {"pgwarden_statements_total", "counter", "Query, Parse and FunctionCall messages.",
       &WorkerStats::statements},
      {"pgwarden_statements_refused_policy_total", "counter",
       "Statements refused by the policy (deny or hold).", &WorkerStats::refused_policy},
      {"pgwarden_masked_messages_total", "counter",
       "Result rows, COPY rows, errors and notices changed by masking.", &WorkerStats::masked},
      {"pgwarden_model_divergences_total", "counter",
       "Sessions ended because a server reply was not what the pipeline model predicted.",
       &WorkerStats::model_divergences},
      {"pgwarden_statements_refused_recording_total", "counter",
       "Statements refused because they could not be recorded.", &WorkerStats::refused_recording},
      {"pgwarden_recording_failed", "gauge",
       "1 while this core cannot write its recording (statements are refused).",
       &WorkerStats::recording_failed},
      {"pgwarden_record_bytes_total", "counter", "Bytes written to segment files.",
       &WorkerStats::record_bytes},
      {"pgwarden_auth_failures_total", "counter", "Failed gateway logins.",
       &WorkerStats::auth_failures},
      {"pgwarden_protocol_errors_total", "counter", "Protocol violations (08P01).",
       &WorkerStats::protocol_errors},
      {"pgwarden_upstream_failures_total", "counter", "Upstream connections that failed.",
       &WorkerStats::upstream_failures},
      {"pgwarden_cancels_forwarded_total", "counter", "CancelRequests forwarded upstream.",
       &WorkerStats::cancels_forwarded},
  };
  std::string out;
  for (const Metric& m : kMetrics) {
    out +=
        std::string("# HELP ") + m.name + " " + m.help + "\n# TYPE " + m.name + " " + m.type + "\n";
    for (const Worker* w : control_.workers) {
      out += std::string(m.name) + "{core=\"" + std::to_string(w->index()) + "\"} " +
             std::to_string((w->stats().*m.counter).get()) + "\n";
    }
  }
  out +=
      "# HELP pgwarden_policy_version Policy reloads so far (0: no policy).\n"
      "# TYPE pgwarden_policy_version gauge\npgwarden_policy_version " +
      std::to_string(control_.policy_version.load()) + "\n";
  return out;
}

}  // namespace pgwarden::core
