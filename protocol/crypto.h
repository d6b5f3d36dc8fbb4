// Small wrappers over OpenSSL's libcrypto for the rest of pgwarden: base64url, and public-key
// signature verification for JWS (RS256, ES256, EdDSA). SCRAM's primitives will live here too.
// No OpenSSL type leaks out of this header.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace pgwarden::protocol {

// Strict base64url without padding (RFC 7515 section 2): nullopt on any other character, on
// '=' padding, on an impossible length, or on non-zero unused trailing bits.
std::optional<std::string> base64url_decode(std::string_view in);
std::string base64url_encode(std::string_view in);

// HMAC-SHA256 of `data` under `key` (recording seals, masking pseudonyms).
std::array<unsigned char, 32> hmac_sha256(std::string_view key, std::string_view data);

enum class SigAlg : std::uint8_t { RS256, ES256, EdDSA };

// A public key for one signature algorithm, built from JWK members. Immutable once built;
// safe to share read-only across cores.
class PublicKey {
 public:
  // n and e are the big-endian RSA modulus and exponent (modulus of at least 2048 bits).
  static std::optional<PublicKey> rsa(std::string_view n, std::string_view e);
  // x and y are the 32-byte P-256 coordinates; the point must be on the curve.
  static std::optional<PublicKey> p256(std::string_view x, std::string_view y);
  // x is the 32-byte Ed25519 public key.
  static std::optional<PublicKey> ed25519(std::string_view x);

  SigAlg alg() const noexcept { return alg_; }
  // Verifies `sig` (JWS encoding: raw r||s for ES256) over `data`.
  bool verify(std::string_view data, std::string_view sig) const;

 private:
  struct Impl;
  PublicKey(SigAlg alg, std::shared_ptr<const Impl> impl) : alg_(alg), impl_(std::move(impl)) {}
  SigAlg alg_;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace pgwarden::protocol
