// OIDC token verification: a JWKS (the identity provider's public keys) and a verifier that
// turns a compact JWS (the client's password field) into a caller identity, or a precise reason
// for refusing it. Sans-I/O: the caller supplies the token, the key set and the time.
#pragma once

#include <simdjson.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/crypto.h"
#include "protocol/result.h"

namespace pgwarden::policy {

// An immutable set of public keys, parsed from JWKS JSON (RFC 7517). Keys of unsupported types
// or curves are skipped (an IdP may publish keys for other purposes); malformed supported keys
// make the whole set invalid, so a typo is not silently ignored.
class Jwks {
 public:
  struct Key {
    std::string kid;
    std::string alg;  // as published, may be empty
    protocol::PublicKey key;
  };
  static protocol::Result<std::shared_ptr<const Jwks>> parse(std::string_view json);
  const std::vector<Key>& keys() const noexcept { return keys_; }

 private:
  std::vector<Key> keys_;
};

// The key set in force, swapped whole when a refresh (--jwks-url) brings a new one. Cores read it
// once per token login; a refresh is requested when a token names a kid the set lacks (the
// provider may have rotated its keys).
class JwksSource {
 public:
  JwksSource() = default;
  explicit JwksSource(std::shared_ptr<const Jwks> keys) { set(std::move(keys)); }
  std::shared_ptr<const Jwks> get() const { return keys_.load(std::memory_order_acquire); }
  void set(std::shared_ptr<const Jwks> keys) {
    keys_.store(std::move(keys), std::memory_order_release);
  }
  void request_refresh() noexcept { refresh_wanted_.store(true, std::memory_order_relaxed); }
  // True once per request.
  bool take_refresh_request() noexcept {
    return refresh_wanted_.exchange(false, std::memory_order_relaxed);
  }

 private:
  std::atomic<std::shared_ptr<const Jwks>> keys_;
  std::atomic<bool> refresh_wanted_{false};
};

struct JwtOptions {
  std::vector<std::string> issuers;    // accepted "iss" values; empty = any
  std::vector<std::string> audiences;  // "aud" must contain one of these; empty = not checked
  std::string identity_claim = "email";
  std::string fallback_identity_claim = "sub";
  std::string groups_claim = "groups";
  std::int64_t clock_skew_s = 60;
  std::size_t max_token_bytes = 16 * 1024;
  static constexpr std::size_t kMaxActors = 8;  // a longer "act" chain is refused
};

struct CallerIdentity {
  std::string identity;  // from identity_claim, else fallback_identity_claim
  std::vector<std::string> groups;
  std::string issuer;
  std::int64_t expires_at = 0;  // "exp", seconds since the epoch
  // Who the token is about, however it names them: issuer and "sub" (the identity claim when
  // there is no "sub"). One person's tokens with different claims (email or not) share it.
  std::string principal;
  // On behalf of (RFC 8693 "act"): the agent acting for the subject, then whoever it acts for
  // in turn (nested "act"), each by its "sub". Empty: the subject acts itself.
  std::vector<std::string> actors;
  // The OAuth client the token was issued to ("azp", else "client_id"), or "".
  std::string client_id;
};

// Verifies tokens for one core: holds that core's simdjson parser. Not thread-safe.
class JwtVerifier {
 public:
  explicit JwtVerifier(JwtOptions options) : options_(std::move(options)) {}

  // The identity a token proves at `now` (seconds since the epoch), or Errc::Rejected with the
  // precise reason (for the gateway's log; clients get a generic message).
  protocol::Result<CallerIdentity> verify(std::string_view token, const Jwks& jwks,
                                          std::int64_t now);
  const JwtOptions& options() const noexcept { return options_; }
  // True when the last verify() failed because no key carries the token's kid.
  bool last_kid_unknown() const noexcept { return kid_unknown_; }

 private:
  JwtOptions options_;
  bool kid_unknown_ = false;
  simdjson::dom::parser parser_;
};

}  // namespace pgwarden::policy
