#include "core/stages/auth_stage.h"

#include <sys/socket.h>

#include <ctime>

#include "core/address.h"
#include "core/log.h"
#include "core/session.h"
#include "core/worker.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
using pr::Next;

namespace {

// PostgreSQL keeps NAMEDATALEN-1 bytes of application_name; cut on a UTF-8 boundary.
std::string clip_name(std::string s) {
  constexpr std::size_t kMax = 63;
  if (s.size() <= kMax) return s;
  std::size_t n = kMax;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

}  // namespace

std::string startup_param_refusal(std::string_view name, std::string_view value) {
  (void)value;
  if (name == "role" || name == "session_authorization") {
    return "pgwarden: the startup parameter \"" + std::string(name) + "\" is not allowed";
  }
  return {};
}

// The client's address, for the failed-login throttle (one getpeername per gateway-auth login).
std::string AuthStage::peer_address() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(s_.client_.fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  std::string a = format_address(reinterpret_cast<sockaddr*>(&ss), len);
  return a.substr(0, a.rfind(':'));  // the host, not the port
}

Next AuthStage::on_startup(const pr::StartupPacket& startup, pr::Bytes packet) {
  Worker& w = s_.w_;
  caller_.user = pr::startup_param(startup.params, "user").value_or("");
  caller_.database = pr::startup_param(startup.params, "database").value_or(caller_.user);
  caller_.application = pr::startup_param(startup.params, "application_name").value_or("");
  caller_.identity = caller_.role = caller_.user;
  if (w.auth() == nullptr) {
    // Relay: the client authenticates to PostgreSQL itself.
    s_.startup_packet_.assign(packet.data(), packet.size());
    s_.connect_upstream();
    return Next::Continue;
  }
  caller_.method = "gateway (not authenticated)";
  caller_.role.clear();
  client_params_.assign(startup.params.data(), startup.params.size());
  peer_ = peer_address();
  if (w.auth_throttle().blocked(peer_, static_cast<std::int64_t>(std::time(nullptr)))) {
    PGW_WARN("session: %s refused: too many failed logins from this address", peer_.c_str());
    s_.fail(pr::sqlstate::kInvalidAuthorization,
            "too many failed authentication attempts from your address; try again later");
    return Next::Stop;
  }
  client_auth_ = std::make_unique<policy::ClientAuth>(*w.auth(), w.jwt_verifier(), caller_.user);
  auto request =
      client_auth_->start(s_.client_.tls ? s_.client_.tls->server_end_point() : std::string());
  if (!request) {
    PGW_WARN("session: authentication refused for \"%s\": %s", caller_.user.c_str(),
             request.error().message.c_str());
    s_.fail(pr::sqlstate::kInvalidAuthorization,
            "authentication failed for user \"" + caller_.user + "\"");
    return Next::Stop;
  }
  if (client_auth_->wants_token() && !s_.client_.tls && !w.plaintext_tokens_ok()) {
    s_.fail(pr::sqlstate::kInvalidAuthorization,
            "token authentication requires TLS (sslmode=require)");
    return Next::Stop;
  }
  s_.state_ = SessionState::ClientAuth;
  s_.queue_copy(Peer::Client, *request);
  return Next::Continue;
}

Next AuthStage::on_client_message(const pr::Fragment& f) {
  Worker& w = s_.w_;
  if (f.first && f.type != pr::fe::kPassword) {
    s_.fail(pr::sqlstate::kProtocolViolation, "expected a password response");
    return Next::Stop;
  }
  const pr::Bytes message = s_.fe_msg_.add(f, s_.fe_.held_prefix());
  if (message.empty()) return Next::Continue;
  auto step = client_auth_->on_message(message, static_cast<std::int64_t>(std::time(nullptr)));
  if (!step) {
    // The precise reason goes to our log only; the client learns nothing it could probe with.
    PGW_WARN("session: authentication failed for \"%s\" from %s: %s", caller_.user.c_str(),
             peer_.c_str(), step.error().message.c_str());
    w.auth_throttle().record_failure(peer_, static_cast<std::int64_t>(std::time(nullptr)));
    ++w.mutable_stats().auth_failures;
    s_.fail(w.auth()->find_user(caller_.user) != nullptr ? pr::sqlstate::kInvalidPassword
                                                         : pr::sqlstate::kInvalidAuthorization,
            "authentication failed for user \"" + caller_.user + "\"");
    return Next::Stop;
  }
  if (!step->reply.empty()) s_.queue_copy(Peer::Client, step->reply);
  if (!step->done) return Next::Continue;
  start_upstream(client_auth_->caller());
  return Next::Continue;
}

void AuthStage::start_upstream(const policy::AuthenticatedCaller& caller) {
  Worker& w = s_.w_;
  const policy::RoleMapping& m = *caller.mapping;
  caller_.identity = caller.identity;
  caller_.groups = caller.groups;
  caller_.method = caller.method;
  caller_.gateway = true;
  token_expires_at_ = caller.expires_at;
  guard_role_ = !m.allow_role_change;
  PGW_INFO("session: %s authenticated (%s), groups mapped to role %s", caller_.identity.c_str(),
           caller.method, m.role.c_str());
  std::string database = m.database;
  std::string app;
  std::vector<std::pair<std::string, std::string>> params;
  pr::for_each_startup_param(client_params_, [&](std::string_view k, std::string_view v) {
    if (k == "database" && database.empty()) database = v;
    if (k == "application_name") app = v;
    // The role is ours to choose: never pass on what could change it (options="-c role=...").
    if (k == "user" || k == "database" || k == "options" || k == "replication" ||
        k == "application_name" || k.substr(0, 5) == "_pq_." || k == w.config().identity_guc) {
      return;
    }
    params.emplace_back(k, v);
  });
  if (database.empty()) database = m.role;
  caller_.role = m.role;
  caller_.upstream_database = database;
  // The caller's identity reaches PostgreSQL's own logs and pg_stat_activity.
  params.emplace_back("application_name", clip_name(caller_.identity + " via pgwarden" +
                                                    (app.empty() ? "" : " (" + app + ")")));
  // And, if configured, a custom setting the database side can read: current_setting('NAME').
  if (!w.config().identity_guc.empty()) {
    params.emplace_back(w.config().identity_guc, caller_.identity);
  }
  params.emplace_back("user", m.role);
  params.emplace_back("database", database);
  s_.startup_packet_.clear();
  pr::append_startup_message(s_.startup_packet_, params);
  upstream_auth_ =
      std::make_unique<pr::UpstreamAuth>(m.role, w.auth()->upstream_passwords.find(m.role)->second);
  s_.connect_upstream();
}

Next AuthStage::on_upstream_message(const pr::Fragment& f) {
  const pr::Bytes message = s_.be_msg_.add(f, s_.be_.held_prefix());
  if (message.empty()) return Next::Continue;
  if (f.type == pr::be::kErrorResponse) {
    const auto e = pr::read_error(message);
    PGW_ERROR("session: upstream refused pgwarden's login as the mapped role: %s %s",
              e ? e->sqlstate.c_str() : "?", e ? e->message.c_str() : "(unreadable)");
    s_.fail(
        pr::sqlstate::kInvalidAuthorization,
        "pgwarden could not log in to the upstream server for you; the gateway log has details");
    return Next::Stop;
  }
  const auto request = pr::read_auth_request(message);
  if (!request) {
    s_.fail(pr::sqlstate::kProtocolViolation,
            "pgwarden: unexpected message from the upstream server");
    return Next::Stop;
  }
  auto reply = upstream_auth_->on_request(*request);
  if (!reply) {
    PGW_ERROR("session: upstream authentication: %s", reply.error().message.c_str());
    s_.fail(
        pr::sqlstate::kInvalidAuthorization,
        "pgwarden could not log in to the upstream server for you; the gateway log has details");
    return Next::Stop;
  }
  if (!reply->empty()) s_.queue_copy(Peer::Upstream, *reply);
  if (upstream_auth_->done()) {
    // The client's authentication completes now; parameters, key and ReadyForQuery follow.
    std::basic_string<std::byte> ok;
    pr::append_auth_request(ok, pr::AuthCode::Ok);
    s_.queue_copy(Peer::Client, ok);
    s_.state_ = SessionState::Authenticating;
  }
  return Next::Continue;
}

bool AuthStage::token_expired() const {
  if (token_expires_at_ == 0) return false;
  const auto grace = static_cast<std::int64_t>(s_.w_.config().token_grace_s);
  return static_cast<std::int64_t>(std::time(nullptr)) > token_expires_at_ + grace;
}

}  // namespace pgwarden::core
