// The gateway-authentication half of Session: the client proves who it is to pgwarden (OIDC token
// or static SCRAM user), the policy maps its groups to a role, and pgwarden logs in upstream as
// that role with a credential the client never sees.
#include <sys/socket.h>

#include <ctime>

#include "core/address.h"
#include "core/log.h"
#include "core/session.h"
#include "core/worker.h"
#include "policy/role_guard.h"
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

// The client's address, for the failed-login throttle (one getpeername per gateway-auth login).
std::string Session::peer_address() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(client_.fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  std::string a = format_address(reinterpret_cast<sockaddr*>(&ss), len);
  return a.substr(0, a.rfind(':'));  // the host, not the port
}

Next Session::begin_client_auth(const pr::StartupPacket& startup) {
  client_params_.assign(startup.params.data(), startup.params.size());
  const std::string user(pr::startup_param(startup.params, "user").value_or(""));
  peer_ = peer_address();
  if (w_.auth_throttle().blocked(peer_, static_cast<std::int64_t>(std::time(nullptr)))) {
    PGW_WARN("session: %s refused: too many failed logins from this address", peer_.c_str());
    fail(pr::sqlstate::kInvalidAuthorization,
         "too many failed authentication attempts from your address; try again later");
    return Next::Stop;
  }
  client_auth_ = std::make_unique<policy::ClientAuth>(*w_.auth(), w_.jwt_verifier(), user);
  auto request = client_auth_->start(client_.tls ? client_.tls->server_end_point() : std::string());
  if (!request) {
    PGW_WARN("session: authentication refused for \"%s\": %s", user.c_str(),
             request.error().message.c_str());
    fail(pr::sqlstate::kInvalidAuthorization, "authentication failed for user \"" + user + "\"");
    return Next::Stop;
  }
  if (client_auth_->wants_token() && !client_.tls && !w_.plaintext_tokens_ok()) {
    fail(pr::sqlstate::kInvalidAuthorization,
         "token authentication requires TLS (sslmode=require)");
    return Next::Stop;
  }
  state_ = SessionState::ClientAuth;
  queue_copy(Peer::Client, *request);
  return Next::Continue;
}

Next Session::on_client_auth(const pr::Fragment& f) {
  const std::string user(pr::startup_param(client_params_, "user").value_or(""));
  if (f.first && f.type != pr::fe::kPassword) {
    fail(pr::sqlstate::kProtocolViolation, "expected a password response");
    return Next::Stop;
  }
  const pr::Bytes message = fe_msg_.add(f, fe_.held_prefix());
  if (message.empty()) return Next::Continue;
  auto step = client_auth_->on_message(message, static_cast<std::int64_t>(std::time(nullptr)));
  if (!step) {
    // The precise reason goes to our log only; the client learns nothing it could probe with.
    PGW_WARN("session: authentication failed for \"%s\" from %s: %s", user.c_str(), peer_.c_str(),
             step.error().message.c_str());
    w_.auth_throttle().record_failure(peer_, static_cast<std::int64_t>(std::time(nullptr)));
    ++w_.mutable_stats().auth_failures;
    fail(w_.auth()->find_user(user) != nullptr ? pr::sqlstate::kInvalidPassword
                                               : pr::sqlstate::kInvalidAuthorization,
         "authentication failed for user \"" + user + "\"");
    return Next::Stop;
  }
  if (!step->reply.empty()) queue_copy(Peer::Client, step->reply);
  if (!step->done) return Next::Continue;
  start_upstream(client_auth_->caller());
  return Next::Continue;
}

void Session::start_upstream(const policy::AuthenticatedCaller& caller) {
  const policy::RoleMapping& m = *caller.mapping;
  identity_ = caller.identity;
  token_expires_at_ = caller.expires_at;
  guard_role_ = !m.allow_role_change;
  PGW_INFO("session: %s authenticated (%s), groups mapped to role %s", identity_.c_str(),
           caller.method, m.role.c_str());
  std::string database = m.database;
  std::string app;
  std::vector<std::pair<std::string, std::string>> params;
  pr::for_each_startup_param(client_params_, [&](std::string_view k, std::string_view v) {
    if (k == "database" && database.empty()) database = v;
    if (k == "application_name") app = v;
    // The role is ours to choose: never pass on what could change it (options="-c role=...").
    if (k == "user" || k == "database" || k == "options" || k == "replication" ||
        k == "application_name" || k.substr(0, 5) == "_pq_." || k == w_.config().identity_guc) {
      return;
    }
    params.emplace_back(k, v);
  });
  if (database.empty()) database = m.role;
  role_ = m.role;
  database_ = database;
  // The caller's identity reaches PostgreSQL's own logs and pg_stat_activity.
  params.emplace_back("application_name", clip_name(identity_ + " via pgwarden" +
                                                    (app.empty() ? "" : " (" + app + ")")));
  // And, if configured, a custom setting the database side can read: current_setting('NAME').
  if (!w_.config().identity_guc.empty()) params.emplace_back(w_.config().identity_guc, identity_);
  params.emplace_back("user", m.role);
  params.emplace_back("database", database);
  startup_packet_.clear();
  pr::append_startup_message(startup_packet_, params);
  upstream_auth_ = std::make_unique<pr::UpstreamAuth>(
      m.role, w_.auth()->upstream_passwords.find(m.role)->second);
  state_ = SessionState::Connecting;
  if (const int rc = w_.connect_upstream(*this); rc < 0) on_connected(rc);
}

Next Session::on_upstream_auth(const pr::Fragment& f) {
  const pr::Bytes message = be_msg_.add(f, be_.held_prefix());
  if (message.empty()) return Next::Continue;
  if (f.type == pr::be::kErrorResponse) {
    const auto e = pr::read_error(message);
    PGW_ERROR("session: upstream refused pgwarden's login as the mapped role: %s %s",
              e ? e->sqlstate.c_str() : "?", e ? e->message.c_str() : "(unreadable)");
    fail(pr::sqlstate::kInvalidAuthorization,
         "pgwarden could not log in to the upstream server for you; the gateway log has details");
    return Next::Stop;
  }
  const auto request = pr::read_auth_request(message);
  if (!request) {
    fail(pr::sqlstate::kProtocolViolation, "pgwarden: unexpected message from the upstream server");
    return Next::Stop;
  }
  auto reply = upstream_auth_->on_request(*request);
  if (!reply) {
    PGW_ERROR("session: upstream authentication: %s", reply.error().message.c_str());
    fail(pr::sqlstate::kInvalidAuthorization,
         "pgwarden could not log in to the upstream server for you; the gateway log has details");
    return Next::Stop;
  }
  if (!reply->empty()) queue_copy(Peer::Upstream, *reply);
  if (upstream_auth_->done()) {
    // The client's authentication completes now; parameters, key and ReadyForQuery follow.
    std::basic_string<std::byte> ok;
    pr::append_auth_request(ok, pr::AuthCode::Ok);
    queue_copy(Peer::Client, ok);
    state_ = SessionState::Authenticating;
  }
  return Next::Continue;
}

bool Session::token_expired() const {
  const auto grace = static_cast<std::int64_t>(w_.config().token_grace_s);
  return static_cast<std::int64_t>(std::time(nullptr)) > token_expires_at_ + grace;
}

}  // namespace pgwarden::core
