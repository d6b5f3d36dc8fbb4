#include "protocol/auth.h"

#include <gtest/gtest.h>

namespace pgwarden::protocol {
namespace {

AuthRequest request(const ByteString& msg) {
  const auto r = read_auth_request(msg);
  EXPECT_TRUE(r.has_value());
  return *r;
}

TEST(AuthMessagesTest, RoundTrip) {
  ByteString b;
  append_auth_request(b, AuthCode::SaslContinue, "r=abc");
  EXPECT_EQ(request(b).code, AuthCode::SaslContinue);
  EXPECT_EQ(request(b).payload, "r=abc");
  ByteString p;
  append_password_message(p, "tok");
  EXPECT_EQ(read_password_message(p), "tok");
  ByteString i;
  append_sasl_initial_response(i, kScramSha256, "n,,n=,r=x");
  const auto ir = read_sasl_initial_response(i);
  ASSERT_TRUE(ir.has_value());
  EXPECT_EQ(ir->mechanism, kScramSha256);
  EXPECT_EQ(ir->data, "n,,n=,r=x");
}

TEST(AuthMessagesTest, PasswordWithEmbeddedNulIsRejected) {
  ByteString p;
  append_password_message(p, std::string_view("good\0evil", 9));
  EXPECT_FALSE(read_password_message(p).has_value());
}

TEST(AuthMessagesTest, SaslInitialLengthMustMatch) {
  ByteString bad;  // declares 16 bytes of SASL data but carries 3
  bad.push_back(std::byte{'p'});
  const std::string body =
      std::string("SCRAM-SHA-256") + '\0' + std::string("\0\0\0\x10", 4) + "abc";
  const auto len = static_cast<std::uint32_t>(body.size() + 4);
  for (int s = 24; s >= 0; s -= 8) bad.push_back(std::byte(len >> s));
  bad.append(reinterpret_cast<const std::byte*>(body.data()), body.size());
  EXPECT_FALSE(read_sasl_initial_response(bad).has_value());
}

TEST(UpstreamAuthTest, ScramAgainstOurServerRole) {
  ScramServer server(ScramVerifier::from_password("pw", "saltsalt", 4096));
  UpstreamAuth up("analyst", "pw");
  ByteString sasl;
  append_auth_request(sasl, AuthCode::Sasl,
                      std::string("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0", 34));
  auto first = up.on_request(request(sasl));
  ASSERT_TRUE(first.ok()) << first.error().message;
  const auto initial = read_sasl_initial_response(*first);
  ASSERT_TRUE(initial.has_value());
  auto server_first = server.on_client_first(initial->data);
  ASSERT_TRUE(server_first.ok());
  ByteString cont;
  append_auth_request(cont, AuthCode::SaslContinue, *server_first);
  auto fin = up.on_request(request(cont));
  ASSERT_TRUE(fin.ok());
  auto server_final = server.on_client_final(*read_sasl_response(*fin));
  ASSERT_TRUE(server_final.ok()) << server_final.error().message;
  ByteString done;
  append_auth_request(done, AuthCode::SaslFinal, *server_final);
  ASSERT_TRUE(up.on_request(request(done)).ok());
  ByteString ok;
  append_auth_request(ok, AuthCode::Ok);
  ASSERT_TRUE(up.on_request(request(ok)).ok());
  EXPECT_TRUE(up.done());
}

TEST(UpstreamAuthTest, CleartextOnlyWhenTheSessionAllowsIt) {
  ByteString req;
  append_auth_request(req, AuthCode::CleartextPassword);
  UpstreamAuth plain("r", "secret");
  const auto refused = plain.on_request(request(req));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message.find("secret"), std::string::npos);
  UpstreamAuth over_tls("r", "secret");
  over_tls.allow_cleartext(true);
  const auto sent = over_tls.on_request(request(req));
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(read_password_message(*sent), "secret");
}

TEST(UpstreamAuthTest, Md5MatchesPostgreSQLsConstruction) {
  UpstreamAuth up("postgres", "secret");
  ByteString md5;
  append_auth_request(md5, AuthCode::Md5Password, std::string("\x01\x02\x03\x04", 4));
  auto reply = up.on_request(request(md5));
  ASSERT_TRUE(reply.ok());
  // md5(md5("secretpostgres") + salt), as libpq computes it (value computed with OpenSSL's CLI).
  EXPECT_EQ(read_password_message(*reply), "md5bb41a296aab6baccb36ff243a562abff");
}

TEST(UpstreamAuthTest, RefusesWhatItCannotOrShouldNotDo) {
  for (std::int32_t code : {2, 7, 8, 9, 42}) {  // Kerberos, GSS, GSS continue, SSPI, unknown
    UpstreamAuth up("r", "p");
    ByteString m;
    append_auth_request(m, static_cast<AuthCode>(code));
    EXPECT_FALSE(up.on_request(request(m)).ok()) << code;
  }
  UpstreamAuth no_scram("r", "p");
  ByteString only_plus;
  append_auth_request(only_plus, AuthCode::Sasl, std::string("SCRAM-SHA-256-PLUS\0\0", 20));
  EXPECT_FALSE(no_scram.on_request(request(only_plus)).ok());
  // A server that says "OK" without finishing SCRAM never proved it knows the password.
  UpstreamAuth skipped("r", "p");
  ByteString sasl, ok;
  append_auth_request(sasl, AuthCode::Sasl, std::string("SCRAM-SHA-256\0\0", 15));
  ASSERT_TRUE(skipped.on_request(request(sasl)).ok());
  append_auth_request(ok, AuthCode::Ok);
  EXPECT_FALSE(skipped.on_request(request(ok)).ok());
  UpstreamAuth bad_md5("r", "p");
  ByteString m;
  append_auth_request(m, AuthCode::Md5Password, "xy");
  EXPECT_FALSE(bad_md5.on_request(request(m)).ok());
}

}  // namespace
}  // namespace pgwarden::protocol
