#include "core/http_client.h"

#include <gtest/gtest.h>

namespace pgwarden::core {
namespace {

TEST(HttpClientTest, UrlForLogHidesWhatMayBeASecret) {
  // Incoming-webhook URLs carry their secret in the path.
  EXPECT_EQ(url_for_log("https://hooks.slack.com/services/T0/B0/s3cr3t", false),
            "https://hooks.slack.com:443/...");
  EXPECT_EQ(url_for_log("http://127.0.0.1:8080/", false), "http://127.0.0.1:8080/");
  // A key set's path is shown; a query, which may hold a key, is not.
  EXPECT_EQ(url_for_log("https://idp.example.com/.well-known/jwks.json?key=abc", true),
            "https://idp.example.com:443/.well-known/jwks.json?...");
  EXPECT_EQ(url_for_log("http://[::1]:9000/jwks", true), "http://[::1]:9000/jwks");
  EXPECT_EQ(url_for_log("ftp://user:pw@host/x", true), "(a URL that does not parse)");
}

}  // namespace
}  // namespace pgwarden::core
