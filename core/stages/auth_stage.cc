#include "core/stages/auth_stage.h"

#include <sys/socket.h>

#include <ctime>

#include "core/address.h"
#include "core/log.h"
#include "core/session.h"
#include "core/worker.h"
#include "policy/classifier.h"
#include "policy/internal_login.h"
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

// Session settings a client may choose at startup: none of them changes privileges or how
// pgwarden reads the session's statements beyond what it follows anyway.
bool allowed_setting(std::string_view name) {
  static constexpr std::string_view kAllowed[] = {"application_name",
                                                  "array_nulls",
                                                  "backslash_quote",
                                                  "bytea_output",
                                                  "check_function_bodies",
                                                  "client_encoding",
                                                  "client_min_messages",
                                                  "constraint_exclusion",
                                                  "cpu_index_tuple_cost",
                                                  "cpu_operator_cost",
                                                  "cpu_tuple_cost",
                                                  "cursor_tuple_fraction",
                                                  "datestyle",
                                                  "default_statistics_target",
                                                  "default_table_access_method",
                                                  "default_tablespace",
                                                  "default_text_search_config",
                                                  "default_toast_compression",
                                                  "default_transaction_deferrable",
                                                  "default_transaction_isolation",
                                                  "default_transaction_read_only",
                                                  "effective_cache_size",
                                                  "effective_io_concurrency",
                                                  "escape_string_warning",
                                                  "extra_float_digits",
                                                  "from_collapse_limit",
                                                  "geqo",
                                                  "gin_fuzzy_search_limit",
                                                  "idle_in_transaction_session_timeout",
                                                  "idle_session_timeout",
                                                  "intervalstyle",
                                                  "jit",
                                                  "join_collapse_limit",
                                                  "lc_monetary",
                                                  "lc_numeric",
                                                  "lc_time",
                                                  "lock_timeout",
                                                  "maintenance_work_mem",
                                                  "max_parallel_workers_per_gather",
                                                  "parallel_setup_cost",
                                                  "parallel_tuple_cost",
                                                  "plan_cache_mode",
                                                  "quote_all_identifiers",
                                                  "random_page_cost",
                                                  "row_security",
                                                  "search_path",
                                                  "seq_page_cost",
                                                  "standard_conforming_strings",
                                                  "statement_timeout",
                                                  "synchronous_commit",
                                                  "temp_buffers",
                                                  "temp_tablespaces",
                                                  "timezone",
                                                  "timezone_abbreviations",
                                                  "transform_null_equals",
                                                  "work_mem",
                                                  "xmlbinary",
                                                  "xmloption"};
  const std::string n = policy::ascii_lower(name);
  if (n.rfind("enable_", 0) == 0) return true;  // planner switches
  for (const std::string_view a : kAllowed) {
    if (n == a) return true;
  }
  return false;
}

bool role_setting(std::string_view name) {
  const std::string n = policy::ascii_lower(name);
  return n == "role" || n == "session_authorization";
}

}  // namespace

std::vector<std::pair<std::string, std::string>> parse_startup_options(std::string_view options,
                                                                       std::string& error) {
  // As pg_split_opts: whitespace separates arguments, a backslash escapes the next character.
  std::vector<std::string> args;
  std::string cur;
  bool in_arg = false;
  for (std::size_t i = 0; i < options.size(); ++i) {
    const char c = options[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      if (in_arg) args.push_back(std::move(cur));
      cur.clear();
      in_arg = false;
      continue;
    }
    in_arg = true;
    if (c == '\\' && i + 1 < options.size()) {
      cur += options[++i];
    } else {
      cur += c;
    }
  }
  if (in_arg) args.push_back(std::move(cur));
  std::vector<std::pair<std::string, std::string>> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string setting;
    if (args[i] == "-c" && i + 1 < args.size()) {
      setting = args[++i];
    } else if (args[i].rfind("-c", 0) == 0 && args[i].size() > 2) {
      setting = args[i].substr(2);
    } else if (args[i].rfind("--", 0) == 0 && args[i].size() > 2) {
      setting = args[i].substr(2);
    } else {
      error = "pgwarden: the startup option \"" + args[i] + "\" is not allowed";
      return {};
    }
    const std::size_t eq = setting.find('=');
    if (eq == std::string::npos || eq == 0) {
      error = "pgwarden: the startup option \"" + setting + "\" is not a setting";
      return {};
    }
    std::string name = setting.substr(0, eq);
    for (char& ch : name) ch = ch == '-' ? '_' : ch;  // --name-with-dashes
    out.emplace_back(std::move(name), setting.substr(eq + 1));
  }
  return out;
}

std::string startup_param_refusal(std::string_view name, std::string_view value, bool gateway) {
  const std::string n = policy::ascii_lower(name);
  if (n == "replication") {
    const std::string v = policy::ascii_lower(value);
    if (v == "false" || v == "off" || v == "no" || v == "0") return {};
    return "pgwarden: replication connections are not allowed through pgwarden";
  }
  if (role_setting(n)) {
    return "pgwarden: the startup parameter \"" + std::string(name) + "\" is not allowed";
  }
  if (n == "pgwarden.token") {
    // A token goes in the password, or later in SET pgwarden.token; never to the server.
    return "pgwarden: pgwarden.token is not a startup parameter (send the token as the password)";
  }
  if (!gateway || n.find('.') != std::string::npos || allowed_setting(n)) return {};
  return "pgwarden: the startup parameter \"" + std::string(name) + "\" is not allowed";
}

namespace {

// NegotiateProtocolVersion, as PostgreSQL sends it for a newer minor version or unknown
// protocol options (_pq_.*): the newest version pgwarden speaks (3.0) and the options it ignored.
void append_negotiate(std::basic_string<std::byte>& out, const std::vector<std::string>& options) {
  auto u32 = [&](std::uint32_t v) {
    for (int sh = 24; sh >= 0; sh -= 8) out.push_back(static_cast<std::byte>((v >> sh) & 0xff));
  };
  std::size_t len = 4 + 4 + 4;
  for (const std::string& o : options) len += o.size() + 1;
  out.push_back(std::byte{pr::be::kNegotiateProtocolVersion});
  u32(static_cast<std::uint32_t>(len));
  u32(pr::kProtocolV3);
  u32(static_cast<std::uint32_t>(options.size()));
  for (const std::string& o : options) {
    out.append(reinterpret_cast<const std::byte*>(o.data()), o.size());
    out.push_back(std::byte{0});
  }
}

}  // namespace

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
  const bool gateway = w.auth() != nullptr;
  // PostgreSQL takes the last of a repeated key: a repeated `replication` is refused, so that
  // what pgwarden judged is what the server does.
  int replication_keys = 0;
  pr::for_each_startup_param(startup.params, [&](std::string_view k, std::string_view v) {
    if (k != "replication") return;
    ++replication_keys;
    const std::string l = policy::ascii_lower(v);
    replication_ = l != "false" && l != "off" && l != "no" && l != "0";
    replication_value_ = v;
  });
  if (replication_keys > 1) {
    s_.fail(pr::sqlstate::kProtocolViolation,
            "pgwarden: the startup parameter \"replication\" is repeated");
    return Next::Stop;
  }
  {
    // Relay: the caller is the startup user, known now; gateway: once authenticated, unless no
    // rule allows replication to anyone.
    if (replication_ && (!gateway || !any_replication_rule()) && !allow_replication()) {
      return Next::Stop;
    }
  }
  // Startup parameters and -c options are settings: none may change privileges (with a policy
  // in relay mode, a role one would step around its role_change rules).
  if (gateway || w.services().policy != nullptr) {
    // A search_path reaching a schema some rule forbids whole would let unqualified names reach
    // its tables (SET search_path is judged the same way).
    const policy::Policy* pol = w.services().policy;
    auto path_refusal = [&](std::string_view value) -> std::string {
      const std::string schema = pol != nullptr ? pol->forbidden_schema_in(value) : std::string();
      if (schema.empty()) return {};
      return "pgwarden: the startup search_path names schema \"" + schema +
             "\", whose tables the policy forbids; qualify names instead";
    };
    std::string refusal;
    std::vector<std::string> protocol_options;
    pr::for_each_startup_param(startup.params, [&](std::string_view k, std::string_view v) {
      if (!refusal.empty() || k == "user" || k == "database" || k == "replication") return;
      if (k.substr(0, 5) == "_pq_.") {
        protocol_options.emplace_back(k);
        return;
      }
      if (k == "options") {
        std::string error;
        const auto settings = parse_startup_options(v, error);
        refusal = error;
        for (const auto& [name, value] : settings) {
          if (refusal.empty()) refusal = startup_param_refusal(name, value, gateway);
          if (refusal.empty() && policy::ascii_lower(name) == "search_path") {
            refusal = path_refusal(value);
          }
        }
        if (!gateway && refusal.rfind("pgwarden: the startup option", 0) == 0) refusal.clear();
        return;
      }
      refusal = startup_param_refusal(k, v, gateway);
      if (refusal.empty() && policy::ascii_lower(k) == "search_path") refusal = path_refusal(v);
    });
    if (!refusal.empty()) {
      PGW_WARN("session: startup refused for \"%s\": %s", caller_.user.c_str(), refusal.c_str());
      s_.fail(pr::sqlstate::kInsufficientPrivilege, refusal);
      return Next::Stop;
    }
    if (gateway && (startup.minor != 0 || !protocol_options.empty())) {
      // pgwarden answers the client itself, as PostgreSQL would.
      std::basic_string<std::byte> npv;
      append_negotiate(npv, protocol_options);
      s_.queue_copy(Peer::Client, npv);
    }
  }
  if (!gateway) {
    if (locked_out()) return Next::Stop;
    // Relay: the client authenticates to PostgreSQL itself.
    s_.startup_packet_.assign(packet.data(), packet.size());
    s_.connect_upstream();
    return Next::Continue;
  }
  caller_.method = "gateway (not authenticated)";
  caller_.role.clear();
  client_params_.assign(startup.params.data(), startup.params.size());
  peer_ = peer_address();
  // pgwarden's own logins (MCP) come from loopback too: failed logins of others from there must
  // not stop them, and theirs (256-bit one-time passwords) are not worth counting.
  internal_ = w.auth()->internal != nullptr &&
              caller_.user.starts_with(policy::InternalLogins::kUserPrefix);
  if (!internal_ &&
      w.auth_throttle().blocked(peer_, static_cast<std::int64_t>(std::time(nullptr)))) {
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
    if (!internal_) {
      w.auth_throttle().record_failure(peer_, static_cast<std::int64_t>(std::time(nullptr)));
    }
    ++w.mutable_stats().auth_failures;
    s_.fail(w.auth()->find_user(caller_.user) != nullptr ? pr::sqlstate::kInvalidPassword
                                                         : pr::sqlstate::kInvalidAuthorization,
            "authentication failed for user \"" + caller_.user + "\"");
    return Next::Stop;
  }
  if (!step->reply.empty()) s_.queue_copy(Peer::Client, step->reply);
  if (!step->done) return Next::Continue;
  return start_upstream(client_auth_->caller()) ? Next::Continue : Next::Stop;
}

// An administrator locked this identity (or one of its groups) out: the login is refused.
bool AuthStage::locked_out() {
  Locks* locks = s_.w_.services().locks;
  if (locks == nullptr) return false;
  const auto list = locks->snapshot();
  const std::int64_t now_us = static_cast<std::int64_t>(std::time(nullptr)) * 1'000'000;
  const AccessLock* l =
      Locks::find(list.get(), caller_.identity, caller_.groups, caller_.principal, now_us);
  if (l == nullptr) {
    // An agent locked out cannot act for anyone (its users' own logins are not affected).
    for (const AccessLock& a : *list) {
      if (a.until_us > now_us && Locks::names_actor(a, caller_.actors, caller_.actor_groups)) {
        PGW_WARN("session: login of \"%s\" refused: agent locked out by %s (lock on %s)",
                 caller_.identity.c_str(), a.by.c_str(), a.name.c_str());
        s_.fail(pr::sqlstate::kInvalidAuthorization,
                "pgwarden: agent \"" + a.name + "\" is locked by an administrator (" + a.by + ")" +
                    (a.reason.empty() ? "" : ": " + a.reason));
        return true;
      }
    }
    return false;
  }
  // The account behind this login is locked under any name from now on.
  locks->learn(l->name, caller_.principal);
  PGW_WARN("session: login of \"%s\" refused: locked out by %s (lock on %s)",
           caller_.identity.c_str(), l->by.c_str(), l->name.c_str());
  s_.fail(pr::sqlstate::kInvalidAuthorization,
          "pgwarden: logins of \"" + caller_.identity + "\" are locked by an administrator (" +
              l->by + ")" + (l->reason.empty() ? "" : ": " + l->reason));
  return true;
}

// On behalf of: every agent in the token's act chain must be allowed to act for the user
// (the policy's may_act), and some rule for agents must take the session.
bool AuthStage::may_act() {
  const policy::Policy* pol = s_.w_.services().policy;
  std::string why;
  for (const std::string& actor : caller_.actors) {
    if (pol == nullptr || pol->may_act(actor, caller_.groups) == nullptr) {
      why = "agent \"" + actor + "\" may not act for \"" + caller_.identity +
            "\" (no may_act entry in the policy allows it)";
      break;
    }
  }
  if (why.empty() && !pol->has_rule_for(caller_.who())) {
    why = "no policy rule is for agent \"" + caller_.actors.front() + "\" acting for \"" +
          caller_.identity + "\"";
  }
  if (why.empty()) {
    caller_.actor_groups = pol->may_act(caller_.actors.front(), caller_.groups)->actor_groups;
    return true;
  }
  PGW_WARN("session: login refused: %s", why.c_str());
  s_.fail(pr::sqlstate::kInvalidAuthorization, "pgwarden: " + why);
  return false;
}

bool AuthStage::any_replication_rule() const {
  const policy::Policy* pol = s_.w_.services().policy;
  if (pol == nullptr) return false;
  for (const policy::Rule& r : pol->rules()) {
    if (r.replication) return true;
  }
  return false;
}

// A replication connection streams the whole database raw (pg_basebackup, standbys, logical
// replication): only a policy rule that names its caller and says "replication": true lets it.
bool AuthStage::allow_replication() {
  const policy::Policy* pol = s_.w_.services().policy;
  const policy::Rule* rule = pol != nullptr ? pol->match(caller_.who()) : nullptr;
  if (rule != nullptr && rule->replication) {
    replication_rule_ = rule->name;
    PGW_INFO("session: replication connection of %s allowed by rule \"%s\"",
             caller_.identity.c_str(), rule->name.c_str());
    return true;
  }
  const std::string why =
      "pgwarden: replication connections are refused unless a policy rule allows them for the "
      "caller (\"replication\": true); " +
      (rule != nullptr ? "rule \"" + rule->name + "\" does not" : std::string("no rule applies"));
  PGW_WARN("session: replication connection of \"%s\" refused", caller_.identity.c_str());
  s_.fail(pr::sqlstate::kInsufficientPrivilege, why);
  return false;
}

bool AuthStage::start_upstream(const policy::AuthenticatedCaller& caller) {
  Worker& w = s_.w_;
  const policy::RoleMapping& m = *caller.mapping;
  caller_.identity = caller.identity;
  caller_.groups = caller.groups;
  caller_.method = caller.method;
  caller_.principal = caller.principal;
  caller_.actors = caller.actors;
  caller_.client_id = caller.client_id;
  caller_.gateway = true;
  if (!caller_.actors.empty() && !may_act()) return false;
  if (locked_out()) return false;
  if (replication_ && !allow_replication()) return false;
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
    if (k == "options") {
      // Checked at startup: every -c setting in it is an allowed one; each goes on by itself.
      std::string error;
      for (auto& [name, value] : parse_startup_options(v, error)) {
        if (name != w.config().identity_guc) params.emplace_back(std::move(name), std::move(value));
      }
      return;
    }
    // The role is ours to choose; the identity setting is ours to set.
    if (k == "user" || k == "database" || k == "replication" || k == "application_name" ||
        k.substr(0, 5) == "_pq_." || k == w.config().identity_guc) {
      return;
    }
    params.emplace_back(k, v);
  });
  if (database.empty()) database = m.role;
  caller_.role = m.role;
  caller_.upstream_database = database;
  // The caller's identity reaches PostgreSQL's own logs and pg_stat_activity. (A pooled session
  // of the MCP endpoint passes from caller to caller: its startup values name none of them, so
  // that RESET never brings back another's; it sets them once ready, as after each handover.)
  params.emplace_back("application_name", internal_ ? std::string("pgwarden MCP endpoint (pooled)")
                                                    : upstream_application(app));
  // And, if configured, a custom setting the database side can read: current_setting('NAME').
  if (!w.config().identity_guc.empty() && !internal_) {
    params.emplace_back(w.config().identity_guc, caller_.identity);
  }
  params.emplace_back("user", m.role);
  params.emplace_back("database", database);
  if (replication_) params.emplace_back("replication", replication_value_);
  s_.startup_packet_.clear();
  pr::append_startup_message(s_.startup_packet_, params);
  upstream_auth_ =
      std::make_unique<pr::UpstreamAuth>(m.role, w.auth()->upstream_passwords.find(m.role)->second);
  s_.connect_upstream();
  return true;
}

std::string AuthStage::upstream_application(std::string_view app) const {
  return clip_name(caller_.identity + " via pgwarden" +
                   (app.empty() ? "" : " (" + std::string(app) + ")"));
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

AuthStage::Refresh AuthStage::refresh_token(std::string_view token) {
  Worker& w = s_.w_;
  if (client_auth_ == nullptr || token_expires_at_ == 0 || w.auth() == nullptr ||
      w.auth()->jwks == nullptr) {
    return {Refresh::Refused,
            "pgwarden: this session did not log in with an OIDC token; there is none to refresh"};
  }
  const auto keys = w.auth()->jwks->get();
  if (keys == nullptr)
    return {Refresh::Refused, "pgwarden: the identity provider's keys are not loaded"};
  policy::JwtVerifier& verifier = w.jwt_verifier();
  auto id = verifier.verify(token, *keys, static_cast<std::int64_t>(std::time(nullptr)));
  if (!id) {
    if (verifier.last_kid_unknown()) w.auth()->jwks->request_refresh();
    PGW_INFO("session: token refresh of %s refused: %s", caller_.identity.c_str(),
             id.error().message.c_str());
    return {Refresh::Refused,
            "pgwarden: the new token is not valid (the gateway log has details); "
            "the session goes on with its current token"};
  }
  // Another subject, agent, identity or set of groups is another caller: a session never
  // changes hands, nor what its caller may do; the caller reconnects.
  std::string why;
  if (id->principal != caller_.principal || id->identity != caller_.identity) {
    why = "the new token is for another subject";
  } else if (id->actors != caller_.actors) {
    why = "the new token names other agents acting for the user";
  } else if (id->groups != caller_.groups) {
    why = "the new token carries other groups; reconnect with it";
  }
  if (why.empty() && id->client_id != caller_.client_id) {
    why = "the new token was issued to another client (azp)";
  }
  if (!why.empty()) {
    PGW_WARN("session: token refresh of %s: %s; ending the session", caller_.identity.c_str(),
             why.c_str());
    return {Refresh::EndSession, "pgwarden: " + why + "; the session ends"};
  }
  token_expires_at_ = id->expires_at;
  return {Refresh::Taken, {}};
}

bool AuthStage::token_expired() const {
  if (token_expires_at_ == 0) return false;
  const auto grace = static_cast<std::int64_t>(s_.w_.config().token_grace_s);
  return static_cast<std::int64_t>(std::time(nullptr)) > token_expires_at_ + grace;
}

}  // namespace pgwarden::core
