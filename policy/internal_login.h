// Logins pgwarden makes to itself: the MCP endpoint runs each tool call's SQL through a session
// of pgwarden's own listener, so every stage (role, policy, approvals, masking, recording) applies
// as for wire clients. The endpoint has verified the caller's token already; it registers the
// caller here and logs in with a user name and password that work once, within a few seconds.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "policy/client_auth.h"

namespace pgwarden::policy {

class InternalLogins {
 public:
  static constexpr std::string_view kUserPrefix = "pgwarden-mcp:";
  static constexpr std::int64_t kValidSeconds = 10;
  static constexpr std::size_t kMaxPending = 1024;
  // A pooled session of the endpoint passes to its next caller with a login of theirs, sent as
  // SET pgwarden.token = '<kHandoverPrefix><user without kUserPrefix>.<password>' (the
  // characters a token may have; a JWT never starts so).
  static constexpr std::string_view kHandoverPrefix = "pgwarden-mcp-handover.";
  static std::string handover_token(std::string_view user, std::string_view password);
  // {user, password} of a handover token (nullopt when it is not one).
  static std::optional<std::pair<std::string, std::string>> from_handover_token(
      std::string_view token);

  // {user, password} that log `caller` in once before now + kValidSeconds (its `mapping` is
  // chosen at login); nullopt when too many logins are pending.
  std::optional<std::pair<std::string, std::string>> issue(AuthenticatedCaller caller,
                                                           std::int64_t now);
  // The caller registered under `user`, if `password` is its password and it has not expired;
  // the registration is used up either way.
  std::optional<AuthenticatedCaller> take(std::string_view user, std::string_view password,
                                          std::int64_t now);

 private:
  struct Pending {
    std::string password;
    std::int64_t expires = 0;
    AuthenticatedCaller caller;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Pending> pending_;
};

}  // namespace pgwarden::policy
