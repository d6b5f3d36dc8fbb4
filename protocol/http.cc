#include "protocol/http.h"

#include <charconv>

namespace pgwarden::protocol {

namespace {

Error malformed(std::string why) {
  return Error{Errc::Malformed, std::move(why)};
}

template <class T>
bool parse_number(std::string_view s, T& out, int base = 10) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

Result<Url> parse_url(std::string_view url) {
  Url out;
  if (url.rfind("https://", 0) == 0) {
    out.tls = true;
    url.remove_prefix(8);
    out.port = 443;
  } else if (url.rfind("http://", 0) == 0) {
    url.remove_prefix(7);
    out.port = 80;
  } else {
    return malformed("URL must start with https:// or http://");
  }
  const std::size_t slash = url.find_first_of("/?#");
  std::string_view authority = url.substr(0, slash);
  std::string_view rest = slash == std::string_view::npos ? "" : url.substr(slash);
  if (authority.find('@') != std::string_view::npos) return malformed("URL must not carry a user");
  if (!rest.empty() && rest.front() == '#') rest = "";
  rest = rest.substr(0, rest.find('#'));
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return malformed("URL: unterminated IPv6 address");
    out.host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return malformed("URL: junk after the IPv6 address");
      port = after.substr(1);
    }
  } else {
    const std::size_t colon = authority.find(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) return malformed("URL has no host");
  for (const char c : out.host) {
    if (c <= ' ' || c == 0x7f) return malformed("URL host contains a control or space character");
  }
  if (!port.empty() || authority.back() == ':') {
    unsigned p = 0;
    if (!parse_number(port, p) || p == 0 || p > 65535) return malformed("URL port is not valid");
    out.port = static_cast<std::uint16_t>(p);
  }
  for (const char c : rest) {
    if (c <= ' ' || c == 0x7f) return malformed("URL path contains a control or space character");
  }
  if (rest.empty() || rest.front() == '?') out.target.push_back('/');
  out.target.append(rest);
  return out;
}

}  // namespace pgwarden::protocol
