// HTTP pieces used to fetch a JWKS: URL parsing and whole-response parsing, with hostile input.
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
  EXPECT_EQ(http_get_request(*u),
            "GET /k HTTP/1.1\r\nHost: [::1]:9443\r\nAccept: application/json\r\n"
            "User-Agent: pgwarden\r\nConnection: close\r\n\r\n");
}

TEST(Url, RefusesWhatItCannotFetchSafely) {
  for (const char* bad : {"ftp://x/", "idp.example.com/jwks", "https://", "https:///path",
                          "https://user:pw@idp/", "https://idp:0/", "https://idp:65536/",
                          "https://idp:12x/", "https://idp:/", "https://[::1/", "https://[::1]x/",
                          "https://id p/", "https://idp/a b", "https://idp/a\r\nX: y"}) {
    EXPECT_FALSE(parse_url(bad).ok()) << bad;
  }
}

TEST(HttpResponse, ContentLengthChunkedAndCloseDelimitedBodies) {
  auto r = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 100);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");

  r = parse_http_response(
      "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n4;ext=1\r\n{\"ke\r\nA\r\nys\":[]}   "
      "\r\n0\r\nX-Trailer: 1\r\n\r\n",
      100);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->body, "{\"keys\":[]}   ");

  r = parse_http_response("HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\nnope", 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "nope");
}

TEST(HttpResponse, HostileResponsesAreErrors) {
  const std::string big(200, 'x');
  for (const std::string& bad : std::vector<std::string>{
           std::string("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"),  // header never ends
           std::string("SMTP 220 hello\r\n\r\n"),
           std::string("HTTP/1.1 2x0 OK\r\n\r\n"),
           std::string("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"),
           std::string("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
           std::string("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
           std::string("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
           std::string("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
           std::string("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked"
                       "\r\n\r\n0\r\n\r\n"),
           std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"),
           std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n"),
           std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "ffffffffffffffffff\r\nab\r\n0\r\n"),
           std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "ffffffffffffffff\r\nab\r\n0\r\n"),
           std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
           std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n"),
           std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"),
           "HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + big,
           "HTTP/1.1 200 OK\r\n\r\n" + big,
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + big.substr(0, 100) +
               "\r\n64\r\n" + big.substr(0, 100) + "\r\n0\r\n\r\n",
       }) {
    EXPECT_FALSE(parse_http_response(bad, 150).ok()) << bad.substr(0, 60);
  }
}

}  // namespace
}  // namespace pgwarden::protocol
