// URL parsing for the flags that name an HTTP(S) endpoint (--jwks-url, --approval-webhook): what
// the flag parser checks before libcurl (core/http_client.h) is ever given the URL. Sans-I/O.
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

}  // namespace pgwarden::protocol
