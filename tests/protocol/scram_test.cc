#include "protocol/scram.h"

#include <gtest/gtest.h>

namespace pgwarden::protocol {
namespace {

// RFC 7677 section 3: user "user", password "pencil".
constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

ScramVerifier rfc_verifier() {
  return ScramVerifier::from_password("pencil", *base64_decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
}

TEST(ScramClientTest, MatchesTheRfc7677Vector) {
  ScramClient c("pencil", std::string(kClientNonce), "user");
  EXPECT_EQ(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  const auto final_msg = c.on_server_first(kServerFirst);
  ASSERT_TRUE(final_msg.ok()) << final_msg.error().message;
  EXPECT_EQ(*final_msg, kClientFinal);
  EXPECT_TRUE(c.on_server_final(kServerFinal).ok());
}

TEST(ScramServerTest, MatchesTheRfc7677Vector) {
  ScramServer s(rfc_verifier(), std::string(kServerNonce));
  const auto first = s.on_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(*first, kServerFirst);
  const auto fin = s.on_client_final(kClientFinal);
  ASSERT_TRUE(fin.ok()) << fin.error().message;
  EXPECT_EQ(*fin, kServerFinal);
}

TEST(ScramVerifierTest, MatchesAVerifierPostgreSQLStored) {
  // From a PostgreSQL 15 server: CREATE ROLE ... PASSWORD 'correct horse battery staple',
  // then SELECT rolpassword FROM pg_authid.
  const std::string pg =
      "SCRAM-SHA-256$4096:t5vNPqNoOepSTyFN0u1Z1A==$LDN+fzVCuUdSNk9uQ5/cjzBzp365Y8aHlIx6cpR81pA=:"
      "Qw7DyOQElnekUxGq5GfGwwxS8prKdxI0JGkAjSbb/yc=";
  const auto parsed = ScramVerifier::parse(pg);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->iterations, 4096u);
  EXPECT_EQ(parsed->to_string(), pg);
  EXPECT_EQ(
      ScramVerifier::from_password("correct horse battery staple", parsed->salt, 4096).to_string(),
      pg);
}

TEST(ScramTest, ClientAndServerAgreeAndWrongPasswordsFail) {
  const ScramVerifier v = ScramVerifier::from_password("s3cret", "saltsaltsalt", 4096);
  for (const char* password : {"s3cret", "S3cret", "", "s3cret "}) {
    ScramServer server(v);
    ScramClient client(password);
    const auto first = server.on_client_first(client.client_first());
    ASSERT_TRUE(first.ok());
    const auto client_final = client.on_server_first(*first);
    ASSERT_TRUE(client_final.ok());
    const auto server_final = server.on_client_final(*client_final);
    const bool right = std::string_view(password) == "s3cret";
    EXPECT_EQ(server_final.ok(), right) << password;
    if (right) {
      EXPECT_TRUE(client.on_server_final(*server_final).ok());
    }
  }
}

TEST(ScramClientTest, RejectsHostileServers) {
  const std::vector<std::string> bad_first = {
      "",
      "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",           // nonce not extended
      "r=someoneelse123456789012,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",        // nonce replaced
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",           // no iterations
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=2000000000",  // CPU bomb
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=not*base64,i=4096",
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096",
      "m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // mandatory extension
      "r=rOprNGfwEbeRWgbNEkqOxyz,r=x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",    // duplicate attr
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,",       // trailing comma
  };
  for (const auto& m : bad_first) {
    ScramClient c("pencil", std::string(kClientNonce));
    EXPECT_FALSE(c.on_server_first(m).ok()) << m;
  }
  // A server that does not know the password cannot produce the final signature.
  for (const char* fin :
       {"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "v=", "e=invalid-proof", "x"}) {
    ScramClient c("pencil", std::string(kClientNonce), "user");
    ASSERT_TRUE(c.on_server_first(kServerFirst).ok());
    EXPECT_FALSE(c.on_server_final(fin).ok()) << fin;
  }
  ScramClient out_of_order("pencil");
  EXPECT_FALSE(out_of_order.on_server_final(kServerFinal).ok());
}

TEST(ScramServerTest, RejectsHostileClients) {
  const std::vector<std::string> bad_first = {"",
                                              "p=tls-server-end-point,,n=,r=abc",
                                              "n,a=admin,n=,r=abc",
                                              "n,,n=,r=",
                                              "n,,m=x,n=,r=abc",
                                              "n,,n=,r=a,b"};
  for (const auto& m : bad_first) {
    ScramServer s(rfc_verifier());
    EXPECT_FALSE(s.on_client_first(m).ok()) << m;
  }
  const std::vector<std::string> bad_final = {
      "",
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",                   // no proof
      "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",  // nonce
      "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",  // binding flag changed
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
      "p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  // wrong proof
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=short",
  };
  for (const auto& m : bad_final) {
    ScramServer s(rfc_verifier(), std::string(kServerNonce));
    ASSERT_TRUE(s.on_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO").ok());
    EXPECT_FALSE(s.on_client_final(m).ok()) << m;
  }
  // A replayed final message after success is refused too.
  ScramServer once(rfc_verifier(), std::string(kServerNonce));
  ASSERT_TRUE(once.on_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO").ok());
  ASSERT_TRUE(once.on_client_final(kClientFinal).ok());
  EXPECT_FALSE(once.on_client_final(kClientFinal).ok());
}

TEST(ScramVerifierTest, RejectsMalformedVerifiers) {
  for (const char* v : {"", "md5abc", "SCRAM-SHA-256$", "SCRAM-SHA-256$4096:salt",
                        "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
                        "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",  // keys too short
                        "SCRAM-SHA-256$x:c2FsdA==$LDN+fzVCuUdSNk9uQ5/cjzBzp365Y8aHlIx6cpR81pA=:"
                        "Qw7DyOQElnekUxGq5GfGwwxS8prKdxI0JGkAjSbb/yc="}) {
    EXPECT_FALSE(ScramVerifier::parse(v).has_value()) << v;
  }
}

TEST(Base64Test, StrictStandardAlphabet) {
  EXPECT_EQ(base64_decode("aGVsbG8="), "hello");
  EXPECT_EQ(base64_decode("aGk="), "hi");
  EXPECT_EQ(base64_decode(""), "");
  EXPECT_FALSE(base64_decode("aGVsbG8").has_value());
  EXPECT_FALSE(base64_decode("aGV=bG8=").has_value());
  EXPECT_FALSE(base64_decode("aGVs_G8=").has_value());
  EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
}

}  // namespace
}  // namespace pgwarden::protocol

namespace pgwarden::protocol {
namespace {

// tls-server-end-point (RFC 5929): both sides hash the same certificate.
struct BoundRun {
  Result<std::string> server_final;
};
BoundRun run_bound(const std::string& server_cbind, const std::string& client_cbind,
                   bool client_binds = true) {
  const ScramVerifier v = ScramVerifier::from_password("pw", "salty-salt", 4096);
  ScramServer server(v);
  server.offer_channel_binding(server_cbind);
  ScramClient client("pw");
  if (client_binds) client.use_channel_binding(client_cbind);
  auto first = server.on_client_first(client.client_first());
  if (!first) return {first.error()};
  auto fin = client.on_server_first(*first);
  if (!fin) return {fin.error()};
  return {server.on_client_final(*fin)};
}

TEST(ScramChannelBindingTest, SameCertificateHashBinds) {
  const std::string cert_hash(32, '\x5a');
  EXPECT_TRUE(run_bound(cert_hash, cert_hash).server_final.ok());
}

TEST(ScramChannelBindingTest, DifferentTlsSessionIsRefused) {
  // A man in the middle terminates TLS with its own certificate: the hashes differ.
  EXPECT_FALSE(run_bound(std::string(32, '\x5a'), std::string(32, '\x5b')).server_final.ok());
}

TEST(ScramChannelBindingTest, ClientWithoutBindingStillWorksButDowngradeIsRefused) {
  EXPECT_TRUE(run_bound(std::string(32, '\x01'), "", /*client_binds=*/false).server_final.ok());
  ScramServer s(ScramVerifier::from_password("pw", "salty-salt", 4096));
  s.offer_channel_binding(std::string(32, '\x01'));
  EXPECT_FALSE(s.on_client_first("y,,n=,r=abcdef").ok());  // "I support it, you do not": a lie
}

TEST(ScramChannelBindingTest, BindingNotOfferedIsRefused) {
  ScramServer s(ScramVerifier::from_password("pw", "salty-salt", 4096));
  EXPECT_FALSE(s.on_client_first("p=tls-server-end-point,,n=,r=abcdef").ok());
  EXPECT_FALSE(s.on_client_first("p=tls-unique,,n=,r=abcdef").ok());
}

}  // namespace
}  // namespace pgwarden::protocol
