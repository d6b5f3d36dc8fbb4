#include "core/admin.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <simdjson.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <ctime>
#include <future>
#include <set>
#include <stdexcept>
#include <thread>

#include "core/admin_http.h"
#include "core/auth_loader.h"
#include "core/log.h"
#include "core/mcp.h"
#include "core/worker.h"
#include "protocol/json.h"

namespace pgwarden::core {

namespace {

constexpr std::size_t kMaxReason = 500;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The text inet_ntop gives for an address literal ("" when it is none): one spelling each.
std::string canonical_ip(const std::string& host) {
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN] = {};
  if (::inet_pton(AF_INET, host.c_str(), buf) == 1) {
    ::inet_ntop(AF_INET, buf, out, sizeof out);
  } else if (::inet_pton(AF_INET6, host.c_str(), buf) == 1) {
    ::inet_ntop(AF_INET6, buf, out, sizeof out);
  }
  return out;
}

// The addresses a Host or Origin may name: the one we listen on, or every address of this host
// when we listen on all of them.
std::set<std::string> listen_ips(const std::string& bound) {
  std::set<std::string> out;
  const std::string ip = canonical_ip(bound);
  if (ip != "0.0.0.0" && ip != "::") {
    out.insert(ip);
    return out;
  }
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr) continue;
      char text[INET6_ADDRSTRLEN] = {};
      if (a->ifa_addr->sa_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text,
                    sizeof text);
      } else if (a->ifa_addr->sa_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr, text,
                    sizeof text);
      }
      if (text[0] != '\0') out.insert(text);
    }
    ::freeifaddrs(list);
  }
  return out;
}

bool ip_literal(const std::string& host) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// "host", "host:port", "[v6]", "[v6]:port" -> host (lower case, no brackets) and port (0: none).
bool split_host(const std::string& text, std::string& host, int& port) {
  std::string rest;
  port = 0;
  if (!text.empty() && text.front() == '[') {
    const std::size_t end = text.find(']');
    if (end == std::string::npos) return false;
    host = text.substr(1, end - 1);
    rest = text.substr(end + 1);
  } else {
    const std::size_t colon = text.find(':');
    host = text.substr(0, colon);
    if (colon != std::string::npos) rest = text.substr(colon);
  }
  if (!rest.empty()) {
    if (rest.size() < 2 || rest.size() > 6 || rest[0] != ':' ||
        rest.find_first_not_of("0123456789", 1) != std::string::npos) {
      return false;
    }
    port = std::stoi(rest.substr(1));
  }
  host = lower(host);
  return !host.empty();
}

void reply(httplib::Response& res, int status, const std::string& body,
           const char* type = "text/plain; charset=utf-8") {
  http_reply(res, status, body, type);
}

// {"reason": "..."} (optional). Control characters become spaces; at most kMaxReason bytes, cut
// at a character boundary.
bool parse_reason(const std::string& body, std::string& reason, std::string& error) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return true;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::object obj;
  if (parser.parse(body).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(obj) != simdjson::SUCCESS) {
    error = "the body must be a JSON object such as {\"reason\": \"...\"}";
    return false;
  }
  for (auto field : obj) {
    std::string_view text;
    if (field.key != "reason" || field.value.get_string().get(text) != simdjson::SUCCESS) {
      error = "the body takes one member, \"reason\" (a string)";
      return false;
    }
    if (text.size() > kMaxReason) {
      std::size_t cut = kMaxReason;
      while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
      text = text.substr(0, cut);
    }
    reason.assign(text);
    for (char& c : reason) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
  }
  return true;
}

std::int64_t now_us() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

// {"name": "identity or group", "seconds": N, "reason": "..."}: `until_us` gets the duration.
bool parse_lock(const std::string& body, AccessLock& lock, std::string& error) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(body).get_object().get(obj) != simdjson::SUCCESS) {
    error = "the body must be a JSON object: {\"name\": ..., \"seconds\": ..., \"reason\": ...}";
    return false;
  }
  std::uint64_t seconds = 0;
  for (auto field : obj) {
    std::string_view text;
    if (field.key == "seconds") {
      if (field.value.get_uint64().get(seconds) != simdjson::SUCCESS || seconds < 1 ||
          seconds > 366 * 86400) {
        error = "\"seconds\" must be a whole number from 1 to 31622400";
        return false;
      }
    } else if ((field.key == "name" || field.key == "reason") &&
               field.value.get_string().get(text) == simdjson::SUCCESS) {
      if (field.key == "name") {
        lock.name.assign(text);
      } else {
        std::string r;
        if (!parse_reason("{\"reason\":" + std::string(simdjson::to_string(field.value)) + "}", r,
                          error)) {
          return false;
        }
        lock.reason = r;
      }
    } else {
      error =
          "unexpected member \"" + std::string(field.key) + "\" (expected name, seconds, reason)";
      return false;
    }
  }
  if (lock.name.empty() || lock.name.size() > 256 ||
      lock.name.find_first_of(std::string("\0\r\n", 3)) != std::string::npos) {
    error = "\"name\" (an identity or a group, at most 256 bytes) is required";
    return false;
  }
  if (seconds == 0) {
    error = "\"seconds\" (how long the lock lasts) is required";
    return false;
  }
  lock.until_us = static_cast<std::int64_t>(seconds) * 1'000'000;
  return true;
}

const char* outcome_json(Approvals::Outcome o) {
  switch (o) {
    case Approvals::Outcome::NotFound:
      return "no pending approval with this id";
    case Approvals::Outcome::NotApprover:
      return "you are in none of the groups that approve statements of this rule";
    case Approvals::Outcome::OwnStatement:
      return "nobody decides their own statement (four eyes)";
    case Approvals::Outcome::AlreadyCounted:
      return "you approved this statement already; it needs another approver";
    default:
      return "";
  }
}

}  // namespace

AdminServer::AdminServer(const Address& listen, Control& control, AdminOptions options)
    : control_(control), options_(std::move(options)) {
  AdminHttpLimits limits;
  limits.max_connections = options_.max_connections;
  http_ = std::make_unique<AdminHttpServer>(limits, options_.tls);
  routes();
  const std::string where = format_address(listen.sa(), listen.len);
  std::string host;
  int port = 0;
  if (!split_host(where, host, port)) throw std::runtime_error("--admin-listen " + listen.text);
  const bool bound =
      port == 0 ? (port = http_->bind_to_any_port(host)) > 0 : http_->bind_to_port(host, port);
  if (!bound) {
    throw std::runtime_error("--admin-listen " + listen.text + ": cannot listen (" +
                             std::strerror(errno) + ")");
  }
  http_->widen_backlog();
  port_ = port;
  bound_host_ = host;
  local_ips_ = listen_ips(host);
  bound_ =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  thread_ = std::thread([this, host] {
    // httplib gives up listening on an accept() error it does not expect (ECONNABORTED, ENFILE,
    // ENOBUFS...): listen again on the same port rather than leave the API dead.
    while (true) {
      http_->listen_after_bind();
      if (stopping_.load()) return;
      PGW_ERROR("admin: the listener stopped (%s); listening again", std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      while (!stopping_.load() && !http_->bind_to_port(host, port_)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      if (stopping_.load()) return;
      http_->widen_backlog();
    }
  });
}

AdminServer::~AdminServer() {
  stopping_.store(true);
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

bool AdminServer::host_allowed(const httplib::Request& req) const {
  std::string host;
  int port = 0;
  if (!split_host(req.get_header_value("Host"), host, port)) return false;
  const int default_port = options_.tls != nullptr ? 443 : 80;
  if ((port != 0 ? port : default_port) != port_) return false;
  // A DNS-rebinding page reaches us under its own name: only our own addresses, localhost when
  // we listen there, and the names we were told about pass.
  if (ip_literal(host))
    return canonical_ip(host) != "" && local_ips_.count(canonical_ip(host)) != 0;
  if (host == "localhost")
    return local_ips_.count("127.0.0.1") != 0 || local_ips_.count("::1") != 0;
  for (const auto& h : options_.hosts) {
    if (lower(h) == host) return true;
  }
  return false;
}

std::optional<AdminCaller> AdminServer::authenticate(const httplib::Request& req,
                                                     httplib::Response& res) {
  const std::string token = bearer_token(req);
  const auto keys = options_.jwks != nullptr ? options_.jwks->get() : nullptr;
  std::string why;
  if (token.empty()) {
    why = "no bearer token";
  } else if (keys == nullptr) {
    why = options_.jwks == nullptr ? "no identity provider keys are configured (--jwks-file or "
                                     "--jwks-url)"
                                   : "the identity provider's keys are not loaded yet";
  } else {
    policy::JwtVerifier verifier(options_.jwt);
    auto id = verifier.verify(token, *keys, static_cast<std::int64_t>(std::time(nullptr)));
    if (id && id->actors.empty()) return AdminCaller{id->identity, id->groups, id->principal};
    if (id) {
      // Approving, killing and locking are a person's acts: an agent acting for an
      // administrator is not one.
      why = "a token of an agent acting for someone (act claim) cannot administer the gateway";
    } else {
      if (verifier.last_kid_unknown()) options_.jwks->request_refresh();
      why = id.error().message;
    }
  }
  PGW_WARN("admin: %s %s from %s refused: %s", req.method.c_str(), req.path.c_str(),
           req.remote_addr.c_str(), why.c_str());
  res.set_header("WWW-Authenticate", token.empty()
                                         ? "Bearer realm=\"pgwarden\""
                                         : "Bearer realm=\"pgwarden\", error=\"invalid_token\"");
  reply(res, 401, token.empty() ? "a bearer token is required\n" : "invalid token: " + why + "\n");
  return std::nullopt;
}

std::optional<AdminCaller> AdminServer::admin(const httplib::Request& req, httplib::Response& res,
                                              const char* what) {
  auto caller = authenticate(req, res);
  if (!caller) return std::nullopt;
  const auto pol = control_.policy.load();
  if (pol == nullptr || !caller->in_any(pol->admins())) {
    reply(res, 403, std::string(what) + " is for the policy's admins\n");
    if (req.method != "GET") record(*caller, req, what, req.path, "refused: not an admin");
    return std::nullopt;
  }
  return caller;
}

std::optional<std::vector<std::string>> AdminServer::ask_cores(AdminQuery::Kind kind,
                                                               std::uint64_t session,
                                                               const std::string& name,
                                                               const std::string& message,
                                                               httplib::Response& res) {
  std::vector<AdminQueryPtr> queries;
  std::vector<std::future<std::string>> answers;
  for (Worker* w : control_.workers) {
    auto q = std::make_shared<AdminQuery>();
    q->kind = kind;
    q->session = session;
    q->name = name;
    q->message = message;
    answers.push_back(q->reply.get_future());
    w->mailbox().post_query(q);
    queries.push_back(std::move(q));
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    if (answers[i].wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
      reply(res, 503, "core " + std::to_string(i) + " did not answer\n");
      return std::nullopt;
    }
    out.push_back(answers[i].get());
  }
  return out;
}

void AdminServer::session_routes() {
  AdminHttpServer& s = *http_;
  s.Get("/api/v1/sessions", [this](const httplib::Request& req, httplib::Response& res) {
    if (!admin(req, res, "listing sessions")) return;
    const auto parts = ask_cores(AdminQuery::Kind::List, 0, "", "", res);
    if (!parts) return;
    std::string body = "[";
    for (const auto& p : *parts) {
      if (p.empty()) continue;
      if (body.size() > 1) body += ",";
      body += p;
    }
    reply(res, 200, body + "]\n", "application/json");
  });
  s.Delete(R"(/api/v1/sessions/([0-9a-f]{16}))", [this](const httplib::Request& req,
                                                        httplib::Response& res) {
    const auto caller = admin(req, res, "ending sessions");
    if (!caller) return;
    std::string reason, error;
    const std::string id = req.matches[1];
    if (!parse_reason(req.body, reason, error)) {
      reply(res, 400, error + "\n");
      record(*caller, req, "kill", id, "refused: " + error);
      return;
    }
    const std::uint64_t session = std::stoull(id, nullptr, 16);
    const std::string message =
        "terminating connection due to administrator command: "
        "pgwarden session ended by " +
        caller->identity + (reason.empty() ? "" : " (" + reason + ")");
    const auto parts = ask_cores(AdminQuery::Kind::Kill, session, "", message, res);
    if (!parts) {
      record(*caller, req, "kill", id, "failed: a core did not answer", reason);
      return;
    }
    std::size_t ended = 0;
    for (const auto& p : *parts) ended += std::stoul(p);
    PGW_WARN("admin: %s (from %s) ends session %s%s%s: %s", caller->identity.c_str(),
             req.remote_addr.c_str(), id.c_str(), reason.empty() ? "" : " because ", reason.c_str(),
             ended != 0 ? "ended" : "no such session");
    record(*caller, req, "kill", id, ended != 0 ? "ended" : "not found", reason);
    if (ended == 0) {
      reply(res, 404, "no open session " + id + "\n");
    } else {
      reply(res, 200, "{\"id\":\"" + id + "\",\"result\":\"ended\"}\n", "application/json");
    }
  });
  s.Get("/api/v1/locks", [this](const httplib::Request& req, httplib::Response& res) {
    if (!admin(req, res, "listing locks")) return;
    reply(res, 200, control_.locks->list_json(now_us()), "application/json");
  });
  s.Post("/api/v1/locks", [this](const httplib::Request& req, httplib::Response& res) {
    const auto caller = admin(req, res, "locking identities");
    if (!caller) return;
    AccessLock lock;
    std::string error;
    if (!parse_lock(req.body, lock, error)) {
      reply(res, 400, error + "\n");
      record(*caller, req, "lock", lock.name, "refused: " + error);
      return;
    }
    lock.by = caller->identity;
    lock.since_us = now_us();
    lock.until_us += lock.since_us;
    const AccessLock copy = lock;
    control_.locks->add(std::move(lock));
    // New logins are refused from now on; the sessions already open are ended.
    const std::string message =
        "terminating connection due to administrator command: "
        "pgwarden: \"" +
        copy.name + "\" was locked by " + copy.by +
        (copy.reason.empty() ? "" : " (" + copy.reason + ")");
    auto parts = ask_cores(AdminQuery::Kind::KillMatching, 0, copy.name, message, res);
    std::size_t ended = 0;
    bool learned = false;
    if (parts) {
      for (const auto& p : *parts) {
        ended += std::stoul(p);
        // The accounts of the ended sessions stay locked whatever identity claim they show.
        for (std::size_t at = p.find('\n'); at != std::string::npos;) {
          const std::size_t next = p.find('\n', at + 1);
          control_.locks->learn(copy.name, p.substr(at + 1, next - at - 1));
          learned = true;
          at = next;
        }
      }
    }
    if (parts && learned) {
      // Sessions of those accounts opened under another identity claim end too.
      parts = ask_cores(AdminQuery::Kind::KillMatching, 0, copy.name, message, res);
      if (parts) {
        for (const auto& p : *parts) ended += std::stoul(p);
      }
    }
    PGW_WARN("admin: %s (from %s) locks \"%s\" for %lld s%s%s; %zu open sessions ended",
             copy.by.c_str(), req.remote_addr.c_str(), copy.name.c_str(),
             static_cast<long long>((copy.until_us - copy.since_us) / 1'000'000),
             copy.reason.empty() ? "" : " because ", copy.reason.c_str(), ended);
    record(*caller, req, "lock", copy.name,
           "locked for " + std::to_string((copy.until_us - copy.since_us) / 1'000'000) + " s (" +
               std::to_string(ended) + " sessions ended)",
           copy.reason);
    if (!parts) return;  // 503 set: the lock stands, some sessions may remain
    std::string body = "{\"name\":";
    protocol::append_json_string(body, copy.name);
    body += ",\"until_us\":" + std::to_string(copy.until_us) +
            ",\"sessions_ended\":" + std::to_string(ended) + "}\n";
    reply(res, 201, body, "application/json");
  });
  s.Delete(R"(/api/v1/locks/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    const auto caller = admin(req, res, "removing locks");
    if (!caller) return;
    const std::string name = req.matches[1];
    const bool removed = control_.locks->remove(name);
    PGW_WARN("admin: %s (from %s) removes the lock on \"%s\": %s", caller->identity.c_str(),
             req.remote_addr.c_str(), name.c_str(), removed ? "removed" : "there was none");
    record(*caller, req, "unlock", name, removed ? "unlocked" : "not found");
    reply(res, removed ? 200 : 404, removed ? "unlocked\n" : "no such lock\n");
  });
}

void AdminServer::record(const AdminCaller& who, const httplib::Request& req, std::string action,
                         std::string target, std::string result, std::string reason) {
  if (control_.workers.empty()) return;
  control_.workers[0]->mailbox().post_record(AdminRecord{who.identity, req.remote_addr,
                                                         std::move(action), std::move(target),
                                                         std::move(result), std::move(reason)});
}

void AdminServer::routes() {
  AdminHttpServer& s = *http_;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!host_allowed(req)) {
      res.set_header("Connection", "close");
      reply(res, 421, "unexpected Host header (add the name with --admin-host)\n");
      return httplib::Server::HandlerResponse::Handled;
    }
    // Whatever is refused here leaves its body unread: the connection closes after the answer
    // (else the body would be read as the next request). Only bodies with a Content-Length are
    // taken, never compressed: a small request cannot become a large one.
    const std::string& method = req.method;
    const bool takes_body =
        method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
    const std::string length = req.get_header_value("Content-Length");
    auto refuse = [&](int status, const char* why) {
      res.set_header("Connection", "close");
      reply(res, status, why);
      return httplib::Server::HandlerResponse::Handled;
    };
    if (req.has_header("Transfer-Encoding")) {
      return refuse(411, "send the body with a Content-Length (no Transfer-Encoding)\n");
    }
    if (req.has_header("Content-Encoding")) return refuse(415, "compressed bodies are refused\n");
    // Ranges of a small answer would only multiply it.
    if (req.has_header("Range")) return refuse(416, "ranges are not served\n");
    if (req.get_header_value_count("Content-Length") > 1) {
      return refuse(400, "one Content-Length, please\n");
    }
    if (takes_body && length.empty()) {
      // RFC 9112 6.3: a request with neither Content-Length nor Transfer-Encoding has no body.
      // httplib would read one until the peer closes; it is told the length is 0 instead (the
      // request object is not const where httplib made it).
      const_cast<httplib::Request&>(req).set_header("Content-Length", "0");
    }
    if (!length.empty() &&
        (length.size() > 6 || length.find_first_not_of("0123456789") != std::string::npos)) {
      return refuse(413, "the body is larger than 64 KiB\n");
    }
    if (!length.empty() && std::stoul(length) > 64 * 1024) {
      return refuse(413, "the body is larger than 64 KiB\n");
    }
    if (!takes_body && !length.empty() && length != "0") {
      return refuse(400, "this request takes no body\n");
    }
    if (req.has_header("Origin")) {
      // Browsers send Origin on cross-site requests; only our own origin may call us.
      const std::string origin = req.get_header_value("Origin");
      const std::string scheme = options_.tls != nullptr ? "https://" : "http://";
      httplib::Request as_host;
      as_host.headers.emplace("Host", origin.substr(std::min(origin.size(), scheme.size())));
      if (origin.rfind(scheme, 0) != 0 || !host_allowed(as_host)) {
        res.set_header("Connection", "close");
        reply(res, 403, "cross-origin requests are refused\n");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    reply(res, 500, "internal error\n");
  });
  if (options_.mcp != nullptr) options_.mcp->install(s);
  s.Get("/healthz",
        [](const httplib::Request&, httplib::Response& res) { reply(res, 200, "ok\n"); });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    std::string why;
    if (control_.phase.load() != Control::Running) why += "draining\n";
    for (const Worker* w : control_.workers) {
      if (w->stats().recording_failed.get() != 0) {
        why += "recording failing on core " + std::to_string(w->index()) + "\n";
      }
    }
    reply(res, why.empty() ? 200 : 503, why.empty() ? "ready\n" : why);
  });
  s.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string& scrape = options_.metrics_token;
    const std::string token = bearer_token(req);
    const bool scraper = !scrape.empty() && token.size() == scrape.size() &&
                         CRYPTO_memcmp(token.data(), scrape.data(), scrape.size()) == 0;
    if (!scraper && !admin(req, res, "/metrics (or the --metrics-token-file token)")) return;
    reply(res, 200, metrics(), "text/plain; version=0.0.4");
  });
  session_routes();
  s.Post("/api/v1/reload", [this](const httplib::Request& req, httplib::Response& res) {
    const auto caller = admin(req, res, "reloading the policy");
    if (!caller) return;
    PGW_INFO("admin: %s (from %s) reloads the policy", caller->identity.c_str(),
             req.remote_addr.c_str());
    const std::string error = options_.reload();
    record(*caller, req, "reload", "policy",
           error.empty() ? "reloaded" : "kept the old policy: " + error);
    if (error.empty()) {
      reply(res, 200, "policy reloaded\n");
    } else {
      reply(res, 422, "keeping the old policy: " + error + "\n");
    }
  });
  s.Get("/api/v1/approvals", [this](const httplib::Request& req, httplib::Response& res) {
    const auto caller = authenticate(req, res);
    if (!caller) return;
    const auto pol = control_.policy.load();
    static const std::vector<std::string> kNone;
    const std::string list =
        control_.approvals != nullptr
            ? control_.approvals->list_json(*caller, pol != nullptr ? pol->admins() : kNone)
            : "[]\n";
    reply(res, 200, list, "application/json");
  });
  s.Post(R"(/api/v1/approvals/([0-9a-f]{16})/(approve|deny))", [this](const httplib::Request& req,
                                                                      httplib::Response& res) {
    const auto caller = authenticate(req, res);
    if (!caller) return;
    std::uint64_t id = 0;
    std::string reason, error;
    if (control_.approvals == nullptr || !parse_approval_id(req.matches[1], id)) {
      reply(res, 404, "no pending approval with this id\n");
      return;
    }
    const bool approve = req.matches[2] == "approve";
    if (!parse_reason(req.body, reason, error)) {
      reply(res, 400, error + "\n");
      record(*caller, req, approve ? "approve" : "deny", req.matches[1], "refused: " + error);
      return;
    }
    const auto outcome = control_.approvals->decide(id, approve, *caller, reason);
    const std::string text = req.matches[1];
    PGW_INFO("admin: %s (from %s) %s approval %s%s%s: %s", caller->identity.c_str(),
             req.remote_addr.c_str(), approve ? "approves" : "denies", text.c_str(),
             reason.empty() ? "" : " because ", reason.c_str(),
             outcome == Approvals::Outcome::Decided   ? "decided"
             : outcome == Approvals::Outcome::Counted ? "counted, more approvals needed"
                                                      : outcome_json(outcome));
    record(*caller, req, approve ? "approve" : "deny", text,
           outcome == Approvals::Outcome::Decided ? (approve ? "approved" : "denied")
           : outcome == Approvals::Outcome::Counted
               ? "counted"
               : std::string("refused: ") + outcome_json(outcome),
           reason);
    std::string body = "{\"id\":\"" + text + "\",\"result\":";
    switch (outcome) {
      case Approvals::Outcome::Decided:
        reply(res, 200, body + (approve ? "\"approved\"}\n" : "\"denied\"}\n"), "application/json");
        return;
      case Approvals::Outcome::Counted:
        reply(res, 202, body + "\"counted: another approver must approve too\"}\n",
              "application/json");
        return;
      case Approvals::Outcome::NotFound:
        res.status = 404;
        break;
      case Approvals::Outcome::AlreadyCounted:
        res.status = 409;
        break;
      default:
        res.status = 403;
    }
    body = "{\"id\":\"" + text + "\",\"error\":";
    protocol::append_json_string(body, outcome_json(outcome));
    reply(res, res.status, body + "}\n", "application/json");
  });
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
      {"pgwarden_record_syncs_total", "counter",
       "Segment writes made durable (synced writes and fdatasyncs); per transaction it falls as "
       "sessions share them (group commit).",
       &WorkerStats::record_syncs},
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
  out +=
      "# HELP pgwarden_admin_connections Admin API connections open now.\n"
      "# TYPE pgwarden_admin_connections gauge\npgwarden_admin_connections " +
      std::to_string(http_->connections()) + "\n";
  out +=
      "# HELP pgwarden_log_lines_dropped_total Log lines lost because stderr was too slow (or "
      "failing).\n# TYPE pgwarden_log_lines_dropped_total counter\n"
      "pgwarden_log_lines_dropped_total " +
      std::to_string(log_lines_dropped()) +
      "\n# HELP pgwarden_log_lines_suppressed_total Log lines not written by the per-message "
      "rate limit (--log-rate-limit).\n# TYPE pgwarden_log_lines_suppressed_total counter\n"
      "pgwarden_log_lines_suppressed_total " +
      std::to_string(log_lines_suppressed()) + "\n";
  return out;
}

}  // namespace pgwarden::core
