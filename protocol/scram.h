// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it, in both roles, sans-I/O: the
// session feeds the SASL payloads of AuthenticationSASLContinue/Final (client role) or of
// SASLInitialResponse/SASLResponse (server role) and sends what comes back. Channel binding:
// tls-server-end-point (RFC 5929), the type PostgreSQL uses, as SCRAM-SHA-256-PLUS.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/result.h"

namespace pgwarden::protocol {

inline constexpr std::string_view kScramSha256 = "SCRAM-SHA-256";
inline constexpr std::string_view kScramSha256Plus = "SCRAM-SHA-256-PLUS";
inline constexpr std::string_view kTlsServerEndPointHeader = "p=tls-server-end-point,,";
// Upper bound on the iteration count a server may ask of us: a hostile upstream must not be
// able to make a connect cost minutes of CPU. PostgreSQL's default is 4096.
inline constexpr std::uint32_t kMaxScramIterations = 1'000'000;

// Client role: pgwarden logging in to the upstream with a credential only it holds.
class ScramClient {
 public:
  // `nonce` and `user` are for tests (RFC 7677's vector names a user); by default the nonce is
  // 18 random bytes, base64-encoded, and the user is empty.
  explicit ScramClient(std::string password, std::string nonce = {}, std::string_view user = {});

  // Binds the exchange to the TLS session: `cbind_data` is the server certificate's hash
  // (tls-server-end-point). Call before client_first(); the mechanism is then -PLUS.
  void use_channel_binding(std::string cbind_data);
  // The SASLInitialResponse payload: "n,,n=,r=<nonce>" (PostgreSQL takes the user from the
  // startup packet, so the SCRAM user name is left empty, as libpq does).
  std::string client_first() const;
  // Handles server-first-message; returns client-final-message.
  Result<std::string> on_server_first(std::string_view server_first);
  // Handles server-final-message: succeeds only if the server proved it knows the verifier.
  Result<bool> on_server_final(std::string_view server_final);

 private:
  std::string password_;
  std::string nonce_;
  std::string gs2_header_ = "n,,";
  std::string cbind_data_;
  std::string client_first_bare_;
  std::string auth_message_;
  std::string server_key_;
  bool awaiting_final_ = false;
};

// A stored verifier in PostgreSQL's format: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>.
struct ScramVerifier {
  std::uint32_t iterations = 0;
  std::string salt;        // raw bytes
  std::string stored_key;  // raw 32 bytes
  std::string server_key;  // raw 32 bytes

  static std::optional<ScramVerifier> parse(std::string_view text);
  // Builds a verifier from a password (for tests and the users-file tool).
  static ScramVerifier from_password(std::string_view password, std::string salt,
                                     std::uint32_t iterations);
  std::string to_string() const;
};

// Server role: a static user logging in to pgwarden.
class ScramServer {
 public:
  explicit ScramServer(ScramVerifier verifier, std::string nonce = {});
  // Offers SCRAM-SHA-256-PLUS with this tls-server-end-point data (our certificate's hash). A
  // client that then claims "y" (supports binding, thinks we do not) is refused: a downgrade.
  void offer_channel_binding(std::string cbind_data) {
    cbind_data_ = std::move(cbind_data);
    binding_offered_ = true;
  }

  // Handles client-first-message (SASLInitialResponse payload); returns server-first-message.
  Result<std::string> on_client_first(std::string_view client_first);
  // Handles client-final-message; returns server-final-message if the proof is right.
  Result<std::string> on_client_final(std::string_view client_final);

 private:
  ScramVerifier verifier_;
  std::string server_nonce_;
  std::string combined_nonce_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string gs2_header_;
  std::string cbind_data_;
  bool binding_offered_ = false;
  bool awaiting_final_ = false;
};

// Standard base64 (with padding), as SCRAM uses; strict decoding.
std::string base64_encode(std::string_view in);
std::optional<std::string> base64_decode(std::string_view in);

}  // namespace pgwarden::protocol
