// Cost of verifying one OIDC token (once per connection), per algorithm, on the tokens minted by
// `jose` for the unit tests (tests/policy/data/jwt_cases.json).
#include <benchmark/benchmark.h>

#include <fstream>
#include <iterator>
#include <string>

#include "policy/jwt.h"

namespace pgwarden::policy {
namespace {

struct Fixture {
  std::shared_ptr<const Jwks> jwks;
  JwtOptions options;
  std::int64_t now = 0;
  std::string token_for(std::string_view case_name) const;
  std::string text;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    std::ifstream in(std::string(PGW_BENCH_DATA) + "/jwt_cases.json");
    x.text.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    simdjson::dom::parser p;
    simdjson::dom::element doc = p.parse(x.text);
    x.jwks = *Jwks::parse(simdjson::minify(doc["jwks"]));
    x.options.issuers = {std::string(doc["issuer"].get_string().value())};
    x.options.audiences = {std::string(doc["audience"].get_string().value())};
    x.now = doc["now"].get_int64().value();
    return x;
  }();
  return f;
}

std::string Fixture::token_for(std::string_view case_name) const {
  simdjson::dom::parser p;
  simdjson::dom::element doc = p.parse(text);
  for (simdjson::dom::element c : doc["cases"].get_array()) {
    if (c["name"].get_string().value() == case_name)
      return std::string(c["token"].get_string().value());
  }
  return {};
}

void verify_case(benchmark::State& state, const char* name, bool expect_ok) {
  const Fixture& f = fixture();
  const std::string token = f.token_for(name);
  JwtVerifier v(f.options);
  if (v.verify(token, *f.jwks, f.now).ok() != expect_ok) {
    state.SkipWithError("fixture token does not verify as expected");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(v.verify(token, *f.jwks, f.now).ok());
}

void BM_Jwt_VerifyRS256(benchmark::State& s) {
  verify_case(s, "rs256", true);
}
void BM_Jwt_VerifyES256(benchmark::State& s) {
  verify_case(s, "es256", true);
}
void BM_Jwt_VerifyEdDSA(benchmark::State& s) {
  verify_case(s, "eddsa", true);
}
void BM_Jwt_RejectForgedRS256(benchmark::State& s) {
  verify_case(s, "signed by an attacker key with a trusted kid", false);
}
void BM_Jwt_RejectAlgNone(benchmark::State& s) {
  verify_case(s, "alg none with a signature", false);
}
BENCHMARK(BM_Jwt_VerifyRS256);
BENCHMARK(BM_Jwt_VerifyES256);
BENCHMARK(BM_Jwt_VerifyEdDSA);
BENCHMARK(BM_Jwt_RejectForgedRS256);
BENCHMARK(BM_Jwt_RejectAlgNone);

}  // namespace
}  // namespace pgwarden::policy
