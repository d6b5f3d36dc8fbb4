#include "policy/jwt.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

namespace pgwarden::policy {
namespace {

// Cases minted by tests/integration/node/mint_jwt_cases.mjs with the npm `jose` package.
// PGW_JWT_CASES points at a freshly minted file (scripts/test.sh does this); otherwise the
// committed one is used.
std::string cases_json() {
  const char* env = std::getenv("PGW_JWT_CASES");
  const std::string path = env != nullptr ? env : std::string(PGW_TEST_DATA) + "/jwt_cases.json";
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class JwtCasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    text_ = cases_json();
    ASSERT_FALSE(text_.empty()) << "no JWT cases file";
    ASSERT_EQ(parser_.parse(text_).get(doc_), simdjson::SUCCESS);
    const std::string jwks_json = simdjson::minify(doc_["jwks"]);
    auto jwks = Jwks::parse(jwks_json);
    ASSERT_TRUE(jwks.ok()) << jwks.error().message;
    jwks_ = *jwks;
    options_.issuers = {std::string(doc_["issuer"].get_string().value())};
    options_.audiences = {std::string(doc_["audience"].get_string().value())};
    now_ = doc_["now"].get_int64().value();
  }
  std::string text_;
  simdjson::dom::parser parser_;
  simdjson::dom::element doc_;
  std::shared_ptr<const Jwks> jwks_;
  JwtOptions options_;
  std::int64_t now_ = 0;
};

TEST_F(JwtCasesTest, SupportedKeysAreLoadedAndOthersIgnored) {
  // rsa1, rsa2, ec1, ed1; not the ES384 key, the oct secret or the encryption key.
  std::vector<std::string> kids;
  for (const auto& k : jwks_->keys()) kids.push_back(k.kid);
  EXPECT_EQ(kids, (std::vector<std::string>{"rsa1", "rsa2", "ec1", "ed1"}));
}

TEST_F(JwtCasesTest, EveryMintedCaseGetsTheExpectedDecision) {
  JwtVerifier verifier(options_);
  int accepted_ok = 0, rejected_ok = 0, total_good = 0, total_bad = 0;
  for (simdjson::dom::element c : doc_["cases"].get_array()) {
    const std::string name(c["name"].get_string().value());
    const std::string token(c["token"].get_string().value());
    const bool expect_accept = c["expect"].get_string().value() == "accept";
    const auto result = verifier.verify(token, *jwks_, now_);
    if (expect_accept) {
      ++total_good;
      ASSERT_TRUE(result.ok()) << name << ": " << result.error().message;
      EXPECT_EQ(result->identity, std::string(c["identity"].get_string().value())) << name;
      std::vector<std::string> groups;
      for (simdjson::dom::element g : c["groups"].get_array())
        groups.emplace_back(g.get_string().value());
      EXPECT_EQ(result->groups, groups) << name;
      EXPECT_EQ(result->issuer, options_.issuers[0]) << name;
      EXPECT_GT(result->expires_at, 0) << name;
      std::vector<std::string> actors;
      simdjson::dom::array want_actors;
      if (c["actors"].get_array().get(want_actors) == simdjson::SUCCESS) {
        for (simdjson::dom::element a : want_actors) actors.emplace_back(a.get_string().value());
      }
      EXPECT_EQ(result->actors, actors) << name;
      std::string_view client_id;
      if (c["client_id"].get_string().get(client_id) != simdjson::SUCCESS) client_id = "";
      EXPECT_EQ(result->client_id, client_id) << name;
      accepted_ok += result.ok();
    } else {
      ++total_bad;
      ASSERT_FALSE(result.ok()) << name << " was accepted as " << result->identity;
      EXPECT_EQ(result.error().code, protocol::Errc::Rejected);
      const std::string reason(c["reason"].get_string().value());
      EXPECT_NE(result.error().message.find(reason), std::string::npos)
          << name << ": expected a reason mentioning '" << reason << "', got '"
          << result.error().message << "'";
      ++rejected_ok;
    }
  }
  std::printf("jwt: %d/%d good tokens accepted, %d/%d hostile tokens rejected\n", accepted_ok,
              total_good, rejected_ok, total_bad);
  EXPECT_GE(total_good, 10);
  EXPECT_GE(total_bad, 40);
}

TEST_F(JwtCasesTest, ExpiryAndNotBeforeFollowTheClock) {
  JwtVerifier verifier(options_);
  simdjson::dom::element first = doc_["cases"].at(0);
  const std::string token(first["token"].get_string().value());
  ASSERT_TRUE(verifier.verify(token, *jwks_, now_).ok());
  const auto exp = verifier.verify(token, *jwks_, now_).value().expires_at;
  EXPECT_TRUE(verifier.verify(token, *jwks_, exp + options_.clock_skew_s - 1).ok());
  EXPECT_FALSE(verifier.verify(token, *jwks_, exp + options_.clock_skew_s).ok());
  options_.clock_skew_s = 0;
  JwtVerifier strict(options_);
  EXPECT_FALSE(strict.verify(token, *jwks_, exp).ok());
}

TEST(JwksTest, RejectsBrokenKeySetsWithAReason) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"not json", "not valid JSON"},
      {"{}", "\"keys\""},
      {R"({"keys":[]})", "no usable"},
      {R"({"keys":[{"kty":"oct","k":"c2VjcmV0"}]})", "no usable"},
      {R"({"keys":[{"kid":"x"}]})", "kty"},
      {R"({"keys":[{"kty":"RSA","kid":"short","n":"AQAB","e":"AQAB"}]})", "not a valid RSA key"},
      {R"({"keys":[{"kty":"RSA","kid":"e1","n":")" + std::string(344, 'x') + R"(","e":"AQ"}]})",
       "not a valid RSA key"},
      {R"({"keys":[{"kty":"EC","crv":"P-256","kid":"off","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]})",
       "not a valid EC key"},
      {R"({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"AAAA"}]})", "not a valid OKP key"},
  };
  for (const auto& [json, reason] : bad) {
    const auto r = Jwks::parse(json);
    ASSERT_FALSE(r.ok()) << json;
    EXPECT_NE(r.error().message.find(reason), std::string::npos)
        << json << " -> " << r.error().message;
  }
}

TEST(JwtVerifierTest, HostileStringsNeverCrash) {
  auto jwks = Jwks::parse(
      R"({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]})");
  ASSERT_TRUE(jwks.ok()) << jwks.error().message;
  JwtVerifier v(JwtOptions{});
  const std::vector<std::string> inputs = {
      "",
      ".",
      "..",
      "...",
      "a.b.c",
      "e30.e30.",
      "e30.e30.AA",
      std::string(100000, 'a'),
      "eyJhbGciOiJFZERTQSJ9..",
      "eyJhbGciOiJFZERTQSJ9.e30.AA",
      std::string("\0.\0.\0", 5),
      "eyJhbGciOlsiRWREU0EiXX0.e30.AA",          // alg is an array
      "eyJhbGciOiJFZERTQSIsImtpZCI6MX0.e30.AA",  // kid is a number
  };
  for (const auto& s : inputs) EXPECT_FALSE(v.verify(s, **jwks, 0).ok()) << s.substr(0, 40);
}

}  // namespace
}  // namespace pgwarden::policy
