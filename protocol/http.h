// Minimal HTTP/1.1 client-side pieces for fetching an identity provider's JWKS: URL parsing, the
// GET request, and parsing a whole response read until the server closed the connection
// (Content-Length, chunked, or close-delimited bodies). Sans-I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/result.h"

namespace pgwarden::protocol {

struct Url {
  bool tls = false;  // https
  std::string host;  // without brackets for IPv6 literals
  std::uint16_t port = 0;
  std::string target;  // path and query, at least "/"
};

// http:// and https:// URLs only; no user info, no fragment.
Result<Url> parse_url(std::string_view url);

std::string http_get_request(const Url& url);

struct HttpResponse {
  int status = 0;
  std::string body;
};

// Parses a complete response. Bodies above `max_body` bytes, truncated bodies and malformed
// framing are errors.
Result<HttpResponse> parse_http_response(std::string_view raw, std::size_t max_body);

}  // namespace pgwarden::protocol
