// Who may connect, and as which PostgreSQL role: the gateway-side authentication configuration
// (OIDC key set, static SCRAM users, group -> role mappings, the upstream credentials only
// pgwarden holds) and ClientAuth, the per-session state machine that authenticates a client and
// picks its role. Sans-I/O: the session feeds whole 'p' messages and sends what comes back.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/jwt.h"
#include "protocol/auth.h"
#include "protocol/scram.h"

namespace pgwarden::policy {

struct RoleMapping {
  std::string group;
  std::string role;
  std::string database;            // empty: the database the client asked for
  bool allow_role_change = false;  // SET ROLE / SET SESSION AUTHORIZATION allowed
};

struct StaticUser {
  std::string name;
  protocol::ScramVerifier verifier;
  std::vector<std::string> groups;
};

class InternalLogins;

// Immutable after start-up; shared read-only by all cores.
struct AuthConfig {
  std::shared_ptr<JwksSource> jwks;  // null: OIDC tokens are not accepted
  JwtOptions jwt;
  std::vector<StaticUser> users;
  std::vector<RoleMapping> roles;                                      // first match wins
  std::map<std::string, std::string, std::less<>> upstream_passwords;  // role -> password
  // pgwarden's own logins (the MCP endpoint's sessions); null when there is no MCP endpoint.
  std::shared_ptr<InternalLogins> internal;

  const StaticUser* find_user(std::string_view name) const;
  const RoleMapping* map_groups(const std::vector<std::string>& groups) const;
};

// {"role_mappings": [{"group": "...", "role": "...", "database": "...",
//                     "allow_role_change": false}]} in the policy file.
protocol::Result<std::vector<RoleMapping>> parse_role_mappings(std::string_view policy_json);
// Lines "name SCRAM-SHA-256$... [group,group...]"; '#' starts a comment line.
protocol::Result<std::vector<StaticUser>> parse_users_file(std::string_view text);
// Lines "role password" (the password is the rest of the line); '#' starts a comment line.
protocol::Result<std::map<std::string, std::string, std::less<>>> parse_secrets(
    std::string_view text);

struct AuthenticatedCaller {
  std::string identity;
  std::vector<std::string> groups;
  const char* method = "";      // "oidc" or "scram"
  std::int64_t expires_at = 0;  // token expiry (seconds since the epoch); 0 = none
  const RoleMapping* mapping = nullptr;
  std::string principal;            // CallerIdentity::principal, or "static:NAME" for a static user
  std::vector<std::string> actors;  // CallerIdentity::actors (an agent acting for the user)
  std::string client_id;            // CallerIdentity::client_id
};

// One client's authentication. Owned by the session's core.
class ClientAuth {
 public:
  ClientAuth(const AuthConfig& config, JwtVerifier& verifier, std::string user)
      : config_(config), verifier_(verifier), user_(std::move(user)) {}

  // The request to send first: SASL (SCRAM-SHA-256) for a static user, a cleartext password
  // (the token) otherwise; an error if neither method is configured for this user.
  // `channel_binding`: on TLS, the tls-server-end-point data, so SCRAM-SHA-256-PLUS is offered.
  protocol::Result<protocol::ByteString> start(std::string_view channel_binding = {});

  struct Step {
    protocol::ByteString reply;  // to send the client (SASL continue/final), may be empty
    bool done = false;           // authenticated and mapped: caller() is valid
  };
  // Handles one whole 'p' message at wall-clock time `now`. Errors carry the precise reason
  // (for the log) and Errc::Rejected; the session answers the client generically.
  protocol::Result<Step> on_message(protocol::Bytes message, std::int64_t now);

  const AuthenticatedCaller& caller() const noexcept { return caller_; }
  // True when the client is asked for a token (sent as a cleartext password).
  bool wants_token() const noexcept { return stage_ == Stage::Token; }
  bool password_method() const noexcept {
    return stage_ == Stage::ScramInitial || stage_ == Stage::ScramFinal;
  }

 private:
  enum class Stage : std::uint8_t { Start, Token, Internal, ScramInitial, ScramFinal, Done };
  protocol::Result<Step> finish(std::vector<std::string> groups, const char* method,
                                std::int64_t expires_at, std::string identity);

  const AuthConfig& config_;
  JwtVerifier& verifier_;
  std::string user_;
  Stage stage_ = Stage::Start;
  const StaticUser* static_user_ = nullptr;
  std::optional<protocol::ScramServer> scram_;
  AuthenticatedCaller caller_;
  std::string principal_;
};

}  // namespace pgwarden::policy
