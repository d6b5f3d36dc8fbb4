#include "protocol/crypto.h"

#include <gtest/gtest.h>

#include <random>

namespace pgwarden::protocol {
namespace {

TEST(Base64UrlTest, RoundTripsEveryLength) {
  std::mt19937 rng(1);
  for (std::size_t n = 0; n < 100; ++n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    const std::string enc = base64url_encode(s);
    EXPECT_EQ(enc.find_first_of("+/="), std::string::npos);
    EXPECT_EQ(base64url_decode(enc), s) << n;
  }
}

TEST(Base64UrlTest, RejectsNonCanonicalAndForeignInput) {
  EXPECT_EQ(base64url_decode("aGVsbG8"), "hello");
  EXPECT_FALSE(base64url_decode("aGVsbG8=").has_value());  // padding
  EXPECT_FALSE(base64url_decode("aGVs+G8").has_value());   // standard alphabet
  EXPECT_FALSE(base64url_decode("aGVs/G8").has_value());
  EXPECT_FALSE(base64url_decode("aGVsbG").has_value() && base64url_decode("aGVsbG") == "hell");
  EXPECT_FALSE(base64url_decode("a").has_value());        // impossible length
  EXPECT_FALSE(base64url_decode("aGVsbG9").has_value());  // non-zero trailing bits
  EXPECT_FALSE(base64url_decode("aGV sbG8").has_value());
  EXPECT_FALSE(base64url_decode(std::string_view("aG\0V", 4)).has_value());
}

TEST(PublicKeyTest, RejectsBadKeyMaterial) {
  EXPECT_FALSE(PublicKey::rsa(std::string(128, '\x01'), std::string("\x01\x00\x01", 3))
                   .has_value());  // 1024 bit
  EXPECT_FALSE(
      PublicKey::rsa(std::string(256, '\xff'), std::string("\x01", 1)).has_value());  // e=1
  EXPECT_FALSE(
      PublicKey::rsa(std::string(256, '\xff'), std::string("\x02", 1)).has_value());  // even e
  EXPECT_FALSE(
      PublicKey::p256(std::string(32, '\0'), std::string(32, '\0')).has_value());  // off curve
  EXPECT_FALSE(PublicKey::p256("short", std::string(32, '\1')).has_value());
  EXPECT_FALSE(PublicKey::ed25519("short").has_value());
  const auto rsa = PublicKey::rsa(std::string(256, '\xff'), std::string("\x01\x00\x01", 3));
  ASSERT_TRUE(rsa.has_value());
  EXPECT_FALSE(rsa->verify("data", std::string(256, '\0')));
  EXPECT_FALSE(rsa->verify("data", ""));
}

}  // namespace
}  // namespace pgwarden::protocol
