// URL parsing for --jwks-url and --approval-webhook, with hostile input.
#include "protocol/http.h"

#include <gtest/gtest.h>

#include <vector>

namespace pgwarden::protocol {
namespace {

TEST(Url, ParsesSchemesHostsPortsAndTargets) {
  auto u = parse_url("https://idp.example.com/.well-known/jwks.json");
  ASSERT_TRUE(u.ok());
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "idp.example.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/.well-known/jwks.json");

  u = parse_url("http://127.0.0.1:8080?x=1#frag");
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/?x=1");

  u = parse_url("https://[::1]:9443/k");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 9443);
  EXPECT_EQ(u->target, "/k");
}

TEST(Url, RefusesWhatItCannotFetchSafely) {
  for (const char* bad : {"ftp://x/", "idp.example.com/jwks", "https://", "https:///path",
                          "https://user:pw@idp/", "https://idp:0/", "https://idp:65536/",
                          "https://idp:12x/", "https://idp:/", "https://[::1/", "https://[::1]x/",
                          "https://id p/", "https://idp/a b", "https://idp/a\r\nX: y"}) {
    EXPECT_FALSE(parse_url(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace pgwarden::protocol
