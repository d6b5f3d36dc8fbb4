#include "protocol/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <charconv>

namespace pgwarden::protocol {
namespace {

constexpr std::size_t kKeyLen = 32;

Error bad(std::string why) {
  return Error{Errc::Rejected, std::move(why)};
}

std::string hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string sha256(std::string_view data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

std::string salted_password(std::string_view password, std::string_view salt,
                            std::uint32_t iterations) {
  std::string out(kKeyLen, '\0');
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                    static_cast<int>(kKeyLen), reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string xor_bytes(std::string_view a, std::string_view b) {
  std::string out(a);
  for (std::size_t i = 0; i < out.size() && i < b.size(); ++i)
    out[i] = static_cast<char>(out[i] ^ b[i]);
  return out;
}

bool equal_ct(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_nonce() {
  unsigned char raw[18];
  if (RAND_bytes(raw, sizeof raw) != 1) std::abort();  // no randomness: nothing safe to do
  return base64_encode(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
}

// Splits "a=...,b=..." attributes; values may contain '=' but not ','.
struct Attrs {
  std::array<std::string_view, 128> by_name{};
  bool ok = true;
};
Attrs parse_attrs(std::string_view msg) {
  Attrs a;
  while (!msg.empty()) {
    const std::size_t comma = msg.find(',');
    const std::string_view part = msg.substr(0, comma);
    if (part.size() < 2 || part[1] != '=' || static_cast<unsigned char>(part[0]) >= 128 ||
        !a.by_name[static_cast<unsigned char>(part[0])].empty()) {
      a.ok = false;
      return a;
    }
    a.by_name[static_cast<unsigned char>(part[0])] = part.substr(2);
    if (comma == std::string_view::npos) break;
    msg.remove_prefix(comma + 1);
    if (msg.empty()) a.ok = false;  // trailing comma
  }
  return a;
}

bool printable_nonce(std::string_view n) {
  if (n.empty()) return false;
  for (const char c : n) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    const bool pad_ok = c == '=' && i + 2 >= in.size() && (i + 1 == in.size() || in[i + 1] == '=');
    if (!alnum && c != '+' && c != '/' && !pad_ok) return std::nullopt;
  }
  std::string out(3 * in.size() / 4, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  std::size_t len = static_cast<std::size_t>(n);
  if (!in.empty() && in.back() == '=') --len;  // EVP_DecodeBlock keeps padding's zero bytes
  if (in.size() >= 2 && in[in.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Client

ScramClient::ScramClient(std::string password, std::string nonce, std::string_view user)
    : password_(std::move(password)), nonce_(nonce.empty() ? random_nonce() : std::move(nonce)) {
  client_first_bare_ = "n=";
  for (const char c : user) {  // saslname escaping (RFC 5802 section 5.1)
    if (c == ',')
      client_first_bare_ += "=2C";
    else if (c == '=')
      client_first_bare_ += "=3D";
    else
      client_first_bare_ += c;
  }
  client_first_bare_ += ",r=" + nonce_;
}

void ScramClient::use_channel_binding(std::string cbind_data) {
  gs2_header_ = std::string(kTlsServerEndPointHeader);
  cbind_data_ = std::move(cbind_data);
}

std::string ScramClient::client_first() const {
  return gs2_header_ + client_first_bare_;
}

Result<std::string> ScramClient::on_server_first(std::string_view server_first) {
  if (awaiting_final_) return bad("unexpected SCRAM server-first-message");
  const Attrs a = parse_attrs(server_first);
  const std::string_view r = a.by_name['r'], s = a.by_name['s'], i = a.by_name['i'];
  if (!a.ok || r.empty() || s.empty() || i.empty() || !a.by_name['m'].empty()) {
    return bad("malformed SCRAM server-first-message");
  }
  if (r.size() <= nonce_.size() || r.substr(0, nonce_.size()) != nonce_ || !printable_nonce(r)) {
    return bad("SCRAM server nonce does not extend ours");
  }
  std::uint32_t iterations = 0;
  const auto [end, ec] = std::from_chars(i.data(), i.data() + i.size(), iterations);
  if (ec != std::errc() || end != i.data() + i.size() || iterations == 0 ||
      iterations > kMaxScramIterations) {
    return bad("SCRAM iteration count out of range");
  }
  const auto salt = base64_decode(s);
  if (!salt || salt->empty()) return bad("SCRAM salt is not base64");
  const std::string salted = salted_password(password_, *salt, iterations);
  const std::string client_key = hmac(salted, "Client Key");
  const std::string final_without_proof =
      "c=" + base64_encode(gs2_header_ + cbind_data_) + ",r=" + std::string(r);
  auth_message_ = client_first_bare_ + "," + std::string(server_first) + "," + final_without_proof;
  const std::string proof = xor_bytes(client_key, hmac(sha256(client_key), auth_message_));
  server_key_ = hmac(salted, "Server Key");
  awaiting_final_ = true;
  return final_without_proof + ",p=" + base64_encode(proof);
}

Result<bool> ScramClient::on_server_final(std::string_view server_final) {
  if (!awaiting_final_) return bad("unexpected SCRAM server-final-message");
  awaiting_final_ = false;
  const Attrs a = parse_attrs(server_final);
  if (!a.ok) return bad("malformed SCRAM server-final-message");
  if (!a.by_name['e'].empty())
    return bad("SCRAM error from server: " + std::string(a.by_name['e']));
  const auto v = base64_decode(a.by_name['v']);
  if (!v || !equal_ct(*v, hmac(server_key_, auth_message_))) {
    return bad("SCRAM server signature is wrong: the server does not know the password");
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Verifier

std::optional<ScramVerifier> ScramVerifier::parse(std::string_view text) {
  constexpr std::string_view prefix = "SCRAM-SHA-256$";
  if (text.substr(0, prefix.size()) != prefix) return std::nullopt;
  text.remove_prefix(prefix.size());
  const std::size_t colon1 = text.find(':');
  const std::size_t dollar = text.find('$');
  const std::size_t colon2 =
      text.find(':', dollar == std::string_view::npos ? text.size() : dollar);
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || colon1 > dollar ||
      colon2 == std::string_view::npos) {
    return std::nullopt;
  }
  ScramVerifier v;
  const std::string_view iter = text.substr(0, colon1);
  const auto [end, ec] = std::from_chars(iter.data(), iter.data() + iter.size(), v.iterations);
  if (ec != std::errc() || end != iter.data() + iter.size() || v.iterations == 0 ||
      v.iterations > kMaxScramIterations) {
    return std::nullopt;
  }
  const auto salt = base64_decode(text.substr(colon1 + 1, dollar - colon1 - 1));
  const auto stored = base64_decode(text.substr(dollar + 1, colon2 - dollar - 1));
  const auto server = base64_decode(text.substr(colon2 + 1));
  if (!salt || salt->empty() || !stored || stored->size() != kKeyLen || !server ||
      server->size() != kKeyLen) {
    return std::nullopt;
  }
  v.salt = *salt;
  v.stored_key = *stored;
  v.server_key = *server;
  return v;
}

ScramVerifier ScramVerifier::from_password(std::string_view password, std::string salt,
                                           std::uint32_t iterations) {
  ScramVerifier v;
  v.iterations = iterations;
  const std::string salted = salted_password(password, salt, iterations);
  v.salt = std::move(salt);
  v.stored_key = sha256(hmac(salted, "Client Key"));
  v.server_key = hmac(salted, "Server Key");
  return v;
}

std::string ScramVerifier::to_string() const {
  return "SCRAM-SHA-256$" + std::to_string(iterations) + ":" + base64_encode(salt) + "$" +
         base64_encode(stored_key) + ":" + base64_encode(server_key);
}

// ---------------------------------------------------------------------------------------------
// Server

ScramServer::ScramServer(ScramVerifier verifier, std::string nonce)
    : verifier_(std::move(verifier)),
      server_nonce_(nonce.empty() ? random_nonce() : std::move(nonce)) {}

Result<std::string> ScramServer::on_client_first(std::string_view client_first) {
  if (awaiting_final_ || !server_first_.empty())
    return bad("unexpected SCRAM client-first-message");
  // gs2 header: no channel binding ("n"), supported by the client but thought absent here ("y"),
  // or tls-server-end-point ("p="). No authzid.
  if (client_first.substr(0, kTlsServerEndPointHeader.size()) == kTlsServerEndPointHeader) {
    if (!binding_offered_) return bad("SCRAM channel binding requested but not offered");
    gs2_header_ = std::string(kTlsServerEndPointHeader);
  } else if (client_first.substr(0, 3) == "n,," || client_first.substr(0, 3) == "y,,") {
    if (client_first[0] == 'y' && binding_offered_) {
      return bad("SCRAM channel binding downgrade: the client says we offer none");
    }
    gs2_header_ = std::string(client_first.substr(0, 3));
  } else {
    return bad("unsupported SCRAM channel binding or authzid");
  }
  client_first_bare_ = std::string(client_first.substr(gs2_header_.size()));
  const Attrs a = parse_attrs(client_first_bare_);
  if (!a.ok || !a.by_name['m'].empty() || !printable_nonce(a.by_name['r'])) {
    return bad("malformed SCRAM client-first-message");
  }
  combined_nonce_ = std::string(a.by_name['r']) + server_nonce_;
  server_first_ = "r=" + combined_nonce_ + ",s=" + base64_encode(verifier_.salt) +
                  ",i=" + std::to_string(verifier_.iterations);
  awaiting_final_ = true;
  return server_first_;
}

Result<std::string> ScramServer::on_client_final(std::string_view client_final) {
  if (!awaiting_final_) return bad("unexpected SCRAM client-final-message");
  awaiting_final_ = false;
  const std::size_t p = client_final.rfind(",p=");
  if (p == std::string_view::npos) return bad("SCRAM client-final-message has no proof");
  const std::string_view without_proof = client_final.substr(0, p);
  const Attrs a = parse_attrs(without_proof);
  if (!a.ok || a.by_name['r'] != combined_nonce_) return bad("SCRAM nonce mismatch");
  // The channel-binding attribute repeats the gs2 header and, when bound, our certificate's hash.
  const std::string expected_c =
      base64_encode(gs2_header_ + (gs2_header_[0] == 'p' ? cbind_data_ : std::string()));
  if (a.by_name['c'] != expected_c) return bad("SCRAM channel binding mismatch");
  const auto proof = base64_decode(client_final.substr(p + 3));
  if (!proof || proof->size() != kKeyLen) return bad("malformed SCRAM proof");
  const std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
  const std::string client_key = xor_bytes(*proof, hmac(verifier_.stored_key, auth_message));
  if (!equal_ct(sha256(client_key), verifier_.stored_key))
    return bad("SCRAM proof is wrong (bad password)");
  return "v=" + base64_encode(hmac(verifier_.server_key, auth_message));
}

}  // namespace pgwarden::protocol
