// Authentication messages (PostgreSQL docs, "Message Formats": Authentication*, PasswordMessage,
// SASLInitialResponse, SASLResponse) and the upstream side of gateway-held credentials: a state
// machine that answers the server's authentication requests with a password only pgwarden
// knows. Sans-I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/framer.h"
#include "protocol/result.h"
#include "protocol/scram.h"

namespace pgwarden::protocol {

// AuthenticationRequest codes.
enum class AuthCode : std::int32_t {
  Ok = 0,
  CleartextPassword = 3,
  Md5Password = 5,
  Sasl = 10,
  SaslContinue = 11,
  SaslFinal = 12,
};

using ByteString = std::basic_string<std::byte>;

// Backend 'R' messages: code plus payload (SASL mechanism list or data, or the md5 salt).
void append_auth_request(ByteString& out, AuthCode code, std::string_view payload = {});
// Frontend 'p' messages.
void append_password_message(ByteString& out, std::string_view password);  // NUL-terminated
void append_sasl_initial_response(ByteString& out, std::string_view mechanism,
                                  std::string_view data);
void append_sasl_response(ByteString& out, std::string_view data);

// A whole backend 'R' message.
struct AuthRequest {
  AuthCode code;
  std::string_view payload;  // view into the message
};
std::optional<AuthRequest> read_auth_request(Bytes message) noexcept;

// A whole 'p' message read as the kind the server asked for.
std::optional<std::string_view> read_password_message(Bytes message) noexcept;
struct SaslInitialResponse {
  std::string_view mechanism;
  std::string_view data;
};
std::optional<SaslInitialResponse> read_sasl_initial_response(Bytes message) noexcept;
std::optional<std::string_view> read_sasl_response(Bytes message) noexcept;

// pgwarden logging in to the upstream as `user` with `password`. Feed each 'R' message; it
// returns what to send back (possibly nothing) until done() — AuthenticationOk seen.
class UpstreamAuth {
 public:
  UpstreamAuth(std::string user, std::string password)
      : user_(std::move(user)), password_(std::move(password)) {}

  // Bytes to send upstream in reply (empty when none is due), or why authentication cannot go on.
  Result<ByteString> on_request(const AuthRequest& req);
  bool done() const noexcept { return done_; }
  // Whether the password may be sent in the clear if the server asks for it: only over TLS or a
  // local socket. Off by default.
  void allow_cleartext(bool allowed) noexcept { cleartext_ok_ = allowed; }

 private:
  std::string user_;
  std::string password_;
  std::optional<ScramClient> scram_;
  bool scram_final_seen_ = false;
  bool done_ = false;
  bool cleartext_ok_ = false;
};

}  // namespace pgwarden::protocol
