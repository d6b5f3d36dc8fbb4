// Startup and authentication: the startup packet's parameters, and gateway authentication (the
// client proves its identity to pgwarden with an OIDC token or as a static SCRAM user, its
// groups map to a role, and pgwarden logs in upstream as that role with a credential the client
// never sees). Owns the Caller every other stage reads. Drives its Session through the startup
// states; lives on the session's core.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/stages/stage.h"
#include "policy/client_auth.h"
#include "protocol/auth.h"
#include "protocol/framer.h"
#include "protocol/startup.h"

namespace pgwarden::core {

class Session;

// Startup parameters (and -c settings in `options`) a client may set. Never role or
// session_authorization, nor a replication connection (allowed only by a rule, after
// authentication: AuthStage::allow_replication); with gateway authentication only the
// session settings that cannot change privileges (and custom dotted settings). Returns the
// refusal, or empty.
std::string startup_param_refusal(std::string_view name, std::string_view value, bool gateway);
// The settings in an `options` startup parameter (-c name=value, -cname=value, --name=value),
// split as PostgreSQL splits it; `error` set (and nothing returned) for anything else.
std::vector<std::pair<std::string, std::string>> parse_startup_options(std::string_view options,
                                                                       std::string& error);

class AuthStage {
 public:
  explicit AuthStage(Session& s) : s_(s) {}

  // The StartupMessage (after SSL negotiation).
  protocol::Next on_startup(const protocol::StartupPacket& startup, protocol::Bytes packet);
  // Gateway authentication: a message from the client, or from the upstream.
  protocol::Next on_client_message(const protocol::Fragment& f);
  protocol::Next on_upstream_message(const protocol::Fragment& f);
  // The token the caller authenticated with has expired (never for static users and relay).
  bool token_expired() const;
  // A fresh token (SET pgwarden.token): it must prove the same subject, actors and groups.
  struct Refresh {
    enum Kind : unsigned char { Taken, Refused, EndSession } kind = Refused;
    std::string message;  // Refused, EndSession: for the client and the log
  };
  Refresh refresh_token(std::string_view token);
  std::int64_t token_expires_at() const noexcept { return token_expires_at_; }
  bool gateway() const noexcept { return client_auth_ != nullptr; }
  bool authenticated() const noexcept { return caller_.gateway; }
  bool guards_role() const noexcept { return guard_role_; }
  // One of pgwarden's own logins (the MCP endpoint's).
  bool internal() const noexcept { return internal_; }
  // A pooled internal session passes to the endpoint's next caller (session_handover.cc): the
  // caller of one-time login `token`, who must map to this session's role and database (nullopt
  // with `why` set when not); then adopt() makes it the session's caller, with the checks of a
  // login (false: refused, the session is failing).
  std::optional<policy::AuthenticatedCaller> handover_caller(std::string_view token,
                                                             std::string& why);
  bool adopt(const policy::AuthenticatedCaller& c);
  // What PostgreSQL's application_name says for the caller (its identity, via pgwarden).
  std::string upstream_application(std::string_view app) const;
  // A replication connection a policy rule allowed: the rule's name (else empty).
  const std::string& replication_rule() const noexcept { return replication_rule_; }
  const Caller& caller() const noexcept { return caller_; }
  // Upstream login (gateway authentication): what the upstream's TLS permits.
  protocol::UpstreamAuth* upstream() noexcept { return upstream_auth_.get(); }

 private:
  bool start_upstream(const policy::AuthenticatedCaller& caller);
  bool allow_replication();  // false: refused (the session is failing)
  bool locked_out();
  bool may_act();
  bool any_replication_rule() const;
  std::string peer_address() const;

  Session& s_;
  Caller caller_;
  std::basic_string<std::byte> client_params_;  // the client's startup parameters
  std::unique_ptr<policy::ClientAuth> client_auth_;
  std::unique_ptr<protocol::UpstreamAuth> upstream_auth_;
  std::string peer_;                   // the client's address (gateway auth), for the throttle
  std::int64_t token_expires_at_ = 0;  // seconds since the epoch; 0 = no expiry
  bool guard_role_ = false;
  bool internal_ = false;          // one of pgwarden's own logins (the MCP endpoint's)
  bool replication_ = false;       // the client asked for a replication connection
  std::string replication_value_;  // as it asked (true, database...)
  std::string replication_rule_;   // the rule that allowed it
};

}  // namespace pgwarden::core
