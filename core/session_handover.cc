// Pooled sessions of the MCP endpoint. The endpoint keeps a few idle connections per mapped role
// (core/mcp_pool.h) and lends one to each tool call; when the next call is another caller's, the
// connection passes to that caller here, without a new PostgreSQL connection:
//   SET pgwarden.token = 'pgwarden-mcp-handover.<id>.<password>'   (a one-time login of theirs)
// Only a session that logged in with one of pgwarden's own logins may do this, only when nothing
// is in flight and no transaction is open, and only to a caller mapped to the same role and
// database. The session's recording ends ("passed to another caller") and a new one starts for
// the new caller, with a new session id; every stage starts afresh (policy, masking, approvals,
// grants: nothing of the previous caller's carries over); PostgreSQL's side is reset with
// DISCARD ALL, then application_name and the identity setting say who the caller is now.
#include <sys/random.h>

#include <cstdio>
#include <memory>

#include "core/log.h"
#include "core/session.h"
#include "core/worker.h"
#include "policy/internal_login.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;

namespace {

// A text value in SQL that no client_encoding or setting can read otherwise: an escape string of
// \xNN escapes only (pure ASCII; a caller's identity is the caller's to choose, and quoting it
// would be read differently under an encoding whose characters can end in a backslash, such as
// SJIS or GBK). The server gets the very bytes, unconverted, as it gets a startup parameter's:
// the same identity setting over MCP as over the wire, whatever the database encoding.
std::string text_value(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "E'";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    out += "\\x";
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  out += "'";
  return out;
}

// application_name as PostgreSQL keeps it: printable ASCII, anything else '?' (as the server
// would clean it; sent cleaned, no database encoding can refuse it).
std::string ascii_name(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
  }
  return s;
}

}  // namespace

std::optional<policy::AuthenticatedCaller> AuthStage::handover_caller(std::string_view token,
                                                                      std::string& why) {
  Worker& w = s_.w_;
  const policy::AuthConfig* auth = w.auth();
  const auto login = policy::InternalLogins::from_handover_token(token);
  if (!internal_ || auth == nullptr || auth->internal == nullptr || !login) {
    why = "not a session of pgwarden's MCP endpoint";
    return std::nullopt;
  }
  auto c = auth->internal->take(login->first, login->second,
                                static_cast<std::int64_t>(std::time(nullptr)));
  if (!c) {
    why = "not a pending internal login (expired, used or wrong password)";
    return std::nullopt;
  }
  const policy::RoleMapping* m = auth->map_groups(c->groups);
  if (m == nullptr) {
    why = "no role mapping for the groups of \"" + c->identity + "\"";
    return std::nullopt;
  }
  // Same role, same database, same credential: what the connection already is.
  if (m->role != caller_.role ||
      (!m->database.empty() && m->database != caller_.upstream_database) ||
      m->allow_role_change != !guard_role_) {
    why = "the next caller maps to another role or database than this connection's";
    return std::nullopt;
  }
  c->mapping = m;
  c->method = "mcp";
  return c;
}

bool AuthStage::adopt(const policy::AuthenticatedCaller& c) {
  caller_.identity = c.identity;
  caller_.groups = c.groups;
  caller_.method = c.method;
  caller_.principal = c.principal;
  caller_.actors = c.actors;
  caller_.actor_groups.clear();
  caller_.client_id = c.client_id;
  token_expires_at_ = 0;
  if (!caller_.actors.empty() && !may_act()) return false;
  return !locked_out();
}

void Session::hand_over(const pr::FrontendView& v, std::string_view login) {
  if (v.type != pr::fe::kQuery || !model_.settled() || !model_.answers_due() || model_.skipping() ||
      model_.tx_status() != 'I' || pause_ != Pause::None || holding_upstream_) {
    // The endpoint sends it alone, between calls: anything else is not the endpoint.
    fail_after_replies(pr::sqlstate::kProtocolViolation,
                       "pgwarden: a pooled session passes to another caller only when idle");
    return;
  }
  std::string why;
  const auto next = auth_.handover_caller(login, why);
  if (!next) {
    PGW_WARN("session %016llx: handover refused: %s", static_cast<unsigned long long>(session_id_),
             why.c_str());
    fail_after_replies(pr::sqlstate::kInvalidAuthorization, "pgwarden: " + why);
    return;
  }
  PGW_INFO("session %016llx: pooled session of %s passes to %s",
           static_cast<unsigned long long>(session_id_), caller().identity.c_str(),
           next->identity.c_str());
  // The previous caller's session ends on record ...
  if (recording_) {
    recording_->record_end("the pooled connection passed to the MCP endpoint's next caller");
    recording_->on_close();
  }
  approvals_.on_close();
  // ... every stage starts afresh for the next one, under a new session id.
  std::destroy_at(&role_guard_);
  std::construct_at(&role_guard_, *this);
  std::destroy_at(&policy_);
  std::construct_at(&policy_, *this);
  std::destroy_at(&masking_);
  std::construct_at(&masking_, *this);
  std::destroy_at(&approvals_);
  std::construct_at(&approvals_, *this);
  std::destroy_at(&pooler_);
  std::construct_at(&pooler_, *this);
  recording_.reset();
  session_id_ = w_.new_session_id();
  started_ns_ = w_.now_ns();
  end_reason_.clear();
  last_statement_.clear();
  link_stages();
  front_ = front_gated_ = done_ = retired_ = back_ =
      Chain{};  // none acts until the next caller is adopted
  role_guard_.set_enabled(auth_.guards_role());
  if (!auth_.adopt(*next)) return;  // refused (agent not allowed, locked): recorded at the end
  build_chains();
  reset_upstream(true);
  model_.commit_local(pr::RequestKind::Query).tag_text = std::string(kLocalSuccess) + "SET";
  start_recording();
}

// PostgreSQL's side of a pooled session says who its caller is: application_name and the
// identity setting (--identity-guc), after DISCARD ALL when it passes from another caller.
void Session::reset_upstream(bool discard) {
  std::basic_string<std::byte> q;
  if (discard) {
    pr::append_query(q, "DISCARD ALL");
    send_own(q, kOwnerSession);
    // DISCARD ALL keeps the random() seed: the previous caller could have fixed what comes next.
    std::uint64_t r = 0;
    if (::getrandom(&r, sizeof r, 0) != sizeof r) {
      r = static_cast<std::uint64_t>(w_.now_ns()) * 0x9E3779B97F4A7C15ull;
    }
    char seed[64];
    std::snprintf(seed, sizeof seed, "SELECT pg_catalog.setseed(%.17g)",
                  static_cast<double>(r >> 11) / static_cast<double>(1ull << 53) * 2.0 - 1.0);
    q.clear();
    pr::append_query(q, seed);
    send_own(q, kOwnerSession);
  }
  // (Booleans come back, not the values: those may have no form in the client encoding.)
  std::string set = "SELECT pg_catalog.set_config('application_name', " +
                    text_value(ascii_name(auth_.upstream_application(caller().application))) +
                    ", false) IS NOT NULL";
  if (!w_.config().identity_guc.empty()) {
    set += ", pg_catalog.set_config(" + text_value(w_.config().identity_guc) + ", " +
           text_value(caller().identity) + ", false) IS NOT NULL";
  }
  q.clear();
  pr::append_query(q, set);
  send_own(q, kOwnerSession);
}

pr::Next Session::on_reset_reply(const BackendMessage& m) {
  if (m.type != pr::be::kErrorResponse) return pr::Next::Continue;
  const auto e = pr::read_error(m.whole);
  PGW_ERROR("session %016llx: resetting a pooled session failed: %s %s",
            static_cast<unsigned long long>(session_id_), e ? e->sqlstate.c_str() : "?",
            e ? e->message.c_str() : "(unreadable)");
  fail(pr::sqlstate::kConnectionFailure,
       "pgwarden: the pooled connection could not be set up for its caller; reconnect");
  return pr::Next::Stop;
}

}  // namespace pgwarden::core
