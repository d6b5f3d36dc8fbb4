#include "protocol/auth.h"

#include <openssl/evp.h>

#include <cstring>

namespace pgwarden::protocol {
namespace {

void put_u32(ByteString& out, std::uint32_t v) {
  const std::byte b[4] = {std::byte(v >> 24), std::byte(v >> 16), std::byte(v >> 8), std::byte(v)};
  out.append(b, 4);
}
void put(ByteString& out, std::string_view s) {
  out.append(reinterpret_cast<const std::byte*>(s.data()), s.size());
}
// Starts a typed message; finish() writes its length.
std::size_t begin(ByteString& out, char type) {
  const std::size_t start = out.size();
  out.push_back(std::byte(type));
  put_u32(out, 0);
  return start;
}
void finish(ByteString& out, std::size_t start) {
  const auto len = static_cast<std::uint32_t>(out.size() - start - 1);
  for (int i = 0; i < 4; ++i) out[start + 1 + i] = std::byte(len >> (24 - 8 * i));
}
std::string_view body(Bytes message) noexcept {
  return {reinterpret_cast<const char*>(message.data()) + 5, message.size() - 5};
}
bool is_type(Bytes message, char type) noexcept {
  return message.size() >= 5 && message[0] == std::byte(type) &&
         read_u32(message.data() + 1) == message.size() - 1;
}

std::string md5_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

Error refuse(std::string why) {
  return Error{Errc::Rejected, std::move(why)};
}

}  // namespace

void append_auth_request(ByteString& out, AuthCode code, std::string_view payload) {
  const std::size_t start = begin(out, 'R');
  put_u32(out, static_cast<std::uint32_t>(code));
  put(out, payload);
  finish(out, start);
}

void append_password_message(ByteString& out, std::string_view password) {
  const std::size_t start = begin(out, 'p');
  put(out, password);
  out.push_back(std::byte{0});
  finish(out, start);
}

void append_sasl_initial_response(ByteString& out, std::string_view mechanism,
                                  std::string_view data) {
  const std::size_t start = begin(out, 'p');
  put(out, mechanism);
  out.push_back(std::byte{0});
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  put(out, data);
  finish(out, start);
}

void append_sasl_response(ByteString& out, std::string_view data) {
  const std::size_t start = begin(out, 'p');
  put(out, data);
  finish(out, start);
}

std::optional<AuthRequest> read_auth_request(Bytes message) noexcept {
  if (!is_type(message, 'R') || message.size() < 9) return std::nullopt;
  const auto code = static_cast<std::int32_t>(read_u32(message.data() + 5));
  return AuthRequest{static_cast<AuthCode>(code), body(message).substr(4)};
}

std::optional<std::string_view> read_password_message(Bytes message) noexcept {
  if (!is_type(message, 'p')) return std::nullopt;
  const std::string_view b = body(message);
  // Exactly one terminating NUL: a NUL inside would let two parsers see different passwords.
  if (b.empty() || b.back() != '\0' || b.find('\0') != b.size() - 1) return std::nullopt;
  return b.substr(0, b.size() - 1);
}

std::optional<SaslInitialResponse> read_sasl_initial_response(Bytes message) noexcept {
  if (!is_type(message, 'p')) return std::nullopt;
  const std::string_view b = body(message);
  const std::size_t nul = b.find('\0');
  if (nul == std::string_view::npos || b.size() < nul + 5) return std::nullopt;
  const auto len =
      static_cast<std::int32_t>(read_u32(reinterpret_cast<const std::byte*>(b.data() + nul + 1)));
  const std::string_view rest = b.substr(nul + 5);
  if (len == -1 && rest.empty()) return SaslInitialResponse{b.substr(0, nul), {}};
  if (len < 0 || static_cast<std::size_t>(len) != rest.size()) return std::nullopt;
  return SaslInitialResponse{b.substr(0, nul), rest};
}

std::optional<std::string_view> read_sasl_response(Bytes message) noexcept {
  if (!is_type(message, 'p')) return std::nullopt;
  return body(message);
}

Result<ByteString> UpstreamAuth::on_request(const AuthRequest& req) {
  ByteString out;
  switch (req.code) {
    case AuthCode::Ok:
      // Refuse a server that skips the SCRAM final step: it never proved it knows the password.
      if (scram_ && !scram_final_seen_)
        return refuse("upstream ended SCRAM without proving itself");
      done_ = true;
      return out;
    case AuthCode::CleartextPassword:
      if (!cleartext_ok_) {
        return refuse("upstream asks for the password in cleartext over an unencrypted connection");
      }
      append_password_message(out, password_);
      return out;
    case AuthCode::Md5Password: {
      if (req.payload.size() != 4) return refuse("malformed md5 authentication request");
      const std::string inner = md5_hex(password_ + user_);
      append_password_message(out, "md5" + md5_hex(inner + std::string(req.payload)));
      return out;
    }
    case AuthCode::Sasl: {
      // A list of NUL-terminated mechanism names, ended by an empty one.
      bool offered = false;
      std::string_view list = req.payload;
      while (!list.empty() && list.front() != '\0') {
        const std::size_t nul = list.find('\0');
        if (nul == std::string_view::npos) return refuse("malformed SASL mechanism list");
        offered = offered || list.substr(0, nul) == kScramSha256;
        list.remove_prefix(nul + 1);
      }
      if (!offered || scram_) return refuse("upstream offers no usable SASL mechanism");
      scram_.emplace(password_);
      append_sasl_initial_response(out, kScramSha256, scram_->client_first());
      return out;
    }
    case AuthCode::SaslContinue: {
      if (!scram_) return refuse("unexpected SASL continue from upstream");
      auto final_msg = scram_->on_server_first(req.payload);
      if (!final_msg) return final_msg.error();
      append_sasl_response(out, *final_msg);
      return out;
    }
    case AuthCode::SaslFinal: {
      if (!scram_ || scram_final_seen_) return refuse("unexpected SASL final from upstream");
      auto ok = scram_->on_server_final(req.payload);
      if (!ok) return ok.error();
      scram_final_seen_ = true;
      return out;
    }
  }
  return refuse("upstream asks for an authentication method pgwarden does not support (code " +
                std::to_string(static_cast<std::int32_t>(req.code)) + ")");
}

}  // namespace pgwarden::protocol
