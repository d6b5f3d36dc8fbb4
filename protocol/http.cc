#include "protocol/http.h"

#include <charconv>

namespace pgwarden::protocol {

namespace {

Error malformed(std::string why) {
  return Error{Errc::Malformed, std::move(why)};
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
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

std::string http_get_request(const Url& url) {
  std::string out = "GET ";
  out.append(url.target).append(" HTTP/1.1\r\nHost: ");
  const bool v6 = url.host.find(':') != std::string::npos;
  if (v6) out.push_back('[');
  out.append(url.host);
  if (v6) out.push_back(']');
  if (url.port != (url.tls ? 443 : 80)) out.append(":").append(std::to_string(url.port));
  out.append("\r\nAccept: application/json\r\nUser-Agent: pgwarden\r\nConnection: close\r\n\r\n");
  return out;
}

Result<HttpResponse> parse_http_response(std::string_view raw, std::size_t max_body) {
  const std::size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return malformed("HTTP response has no complete header");
  std::string_view head = raw.substr(0, head_end);
  std::string_view body = raw.substr(head_end + 4);

  const std::size_t eol = head.find("\r\n");
  const std::string_view status_line = head.substr(0, eol);
  head.remove_prefix(eol == std::string_view::npos ? head.size() : eol + 2);
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12 || status_line[8] != ' ') {
    return malformed("not an HTTP/1.x status line");
  }
  HttpResponse out;
  if (!parse_number(status_line.substr(9, 3), out.status) || out.status < 100) {
    return malformed("HTTP status code is not valid");
  }

  bool chunked = false;
  bool have_length = false;
  std::size_t length = 0;
  while (!head.empty()) {
    const std::size_t n = head.find("\r\n");
    const std::string_view line = head.substr(0, n);
    head.remove_prefix(n == std::string_view::npos ? head.size() : n + 2);
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return malformed("malformed HTTP header");
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      std::size_t v = 0;
      if (!parse_number(value, v)) return malformed("Content-Length is not a number");
      if (have_length && v != length) return malformed("conflicting Content-Length headers");
      have_length = true;
      length = v;
    } else if (iequals(name, "transfer-encoding")) {
      if (!iequals(value, "chunked")) return malformed("unsupported Transfer-Encoding");
      chunked = true;
    }
  }
  if (chunked && have_length) return malformed("both Content-Length and chunked encoding");

  if (chunked) {
    std::string_view rest = body;
    while (true) {
      const std::size_t n = rest.find("\r\n");
      if (n == std::string_view::npos) return malformed("truncated chunked body");
      std::string_view size_text = rest.substr(0, n);
      size_text = trim(size_text.substr(0, size_text.find(';')));  // chunk extensions ignored
      std::size_t size = 0;
      if (!parse_number(size_text, size, 16)) return malformed("bad chunk size");
      rest.remove_prefix(n + 2);
      if (size == 0) break;  // trailers, if any, are ignored
      if (size > max_body - out.body.size()) {
        return malformed("HTTP body larger than " + std::to_string(max_body) + " bytes");
      }
      if (rest.size() < size + 2) return malformed("truncated chunked body");
      if (rest.substr(size, 2) != "\r\n") return malformed("chunk not followed by CRLF");
      out.body.append(rest.substr(0, size));
      rest.remove_prefix(size + 2);
    }
    return out;
  }
  if (have_length) {
    if (length > max_body) {
      return malformed("HTTP body larger than " + std::to_string(max_body) + " bytes");
    }
    if (body.size() < length) return malformed("truncated HTTP body");
    out.body = body.substr(0, length);
    return out;
  }
  if (body.size() > max_body) {
    return malformed("HTTP body larger than " + std::to_string(max_body) + " bytes");
  }
  out.body = body;  // delimited by the server closing the connection
  return out;
}

}  // namespace pgwarden::protocol
