#include "protocol/messages.h"

#include <cstring>

namespace pgwarden::protocol {
namespace {

void put_u32(std::basic_string<std::byte>& out, std::uint32_t v) {
  const std::byte b[4] = {std::byte(v >> 24), std::byte(v >> 16), std::byte(v >> 8), std::byte(v)};
  out.append(b, 4);
}

void put_cstr(std::basic_string<std::byte>& out, std::string_view s) {
  // A NUL inside would end the field early on the client; cut there, as libpq would read it.
  const std::size_t n = s.find('\0');
  if (n != std::string_view::npos) s = s.substr(0, n);
  out.append(reinterpret_cast<const std::byte*>(s.data()), s.size());
  out.push_back(std::byte{0});
}

void write_u32(std::byte* p, std::uint32_t v) noexcept {
  p[0] = std::byte(v >> 24);
  p[1] = std::byte(v >> 16);
  p[2] = std::byte(v >> 8);
  p[3] = std::byte(v);
}

}  // namespace

void append_error(std::basic_string<std::byte>& out, std::string_view severity,
                  std::string_view sqlstate, std::string_view message, char type) {
  const std::size_t start = out.size();
  out.push_back(std::byte(type));
  put_u32(out, 0);
  out.push_back(std::byte{'S'});
  put_cstr(out, severity);
  out.push_back(std::byte{'V'});
  put_cstr(out, severity);
  out.push_back(std::byte{'C'});
  put_cstr(out, sqlstate);
  out.push_back(std::byte{'M'});
  put_cstr(out, message);
  out.push_back(std::byte{0});
  write_u32(out.data() + start + 1, static_cast<std::uint32_t>(out.size() - start - 1));
}

void append_ready_for_query(std::basic_string<std::byte>& out, char status) {
  out.push_back(std::byte{'Z'});
  put_u32(out, 5);
  out.push_back(std::byte(status));
}

void append_command_complete(std::basic_string<std::byte>& out, std::string_view tag) {
  out.push_back(std::byte{'C'});
  put_u32(out, static_cast<std::uint32_t>(4 + tag.size() + 1));
  put_cstr(out, tag);
}

void append_query(std::basic_string<std::byte>& out, std::string_view sql) {
  out.push_back(std::byte{'Q'});
  put_u32(out, static_cast<std::uint32_t>(4 + sql.size() + 1));
  put_cstr(out, sql);
}

void append_parse(std::basic_string<std::byte>& out, std::string_view name, std::string_view sql) {
  out.push_back(std::byte{'P'});
  put_u32(out, static_cast<std::uint32_t>(4 + name.size() + 1 + sql.size() + 1 + 2));
  put_cstr(out, name);
  put_cstr(out, sql);
  out.push_back(std::byte{0});  // no parameter types
  out.push_back(std::byte{0});
}

void append_backend_key(std::basic_string<std::byte>& out, BackendKey key) {
  out.push_back(std::byte{'K'});
  put_u32(out, 12);
  put_u32(out, static_cast<std::uint32_t>(key.pid));
  put_u32(out, static_cast<std::uint32_t>(key.secret));
}

void append_cancel_request(std::basic_string<std::byte>& out, BackendKey key) {
  put_u32(out, 16);
  put_u32(out, kCancelRequestCode);
  put_u32(out, static_cast<std::uint32_t>(key.pid));
  put_u32(out, static_cast<std::uint32_t>(key.secret));
}

void write_backend_key(std::span<std::byte> message, BackendKey key) noexcept {
  write_u32(message.data() + 5, static_cast<std::uint32_t>(key.pid));
  write_u32(message.data() + 9, static_cast<std::uint32_t>(key.secret));
}

std::optional<BackendKey> read_backend_key(Bytes message) noexcept {
  if (message.size() != 13 || message[0] != std::byte{'K'} || read_u32(message.data() + 1) != 12) {
    return std::nullopt;
  }
  return BackendKey{static_cast<std::int32_t>(read_u32(message.data() + 5)),
                    static_cast<std::int32_t>(read_u32(message.data() + 9))};
}

char read_ready_status(Bytes message) noexcept {
  if (message.size() != 6 || message[0] != std::byte{'Z'}) return 0;
  const char s = static_cast<char>(message[5]);
  return (s == 'I' || s == 'T' || s == 'E') ? s : 0;
}

std::optional<ErrorFields> read_error(Bytes message) {
  if (message.size() < 6) return std::nullopt;
  ErrorFields out;
  std::size_t pos = 5;
  while (pos < message.size()) {
    const char code = static_cast<char>(message[pos++]);
    if (code == 0) return pos == message.size() ? std::optional(out) : std::nullopt;
    const auto* s = reinterpret_cast<const char*>(message.data() + pos);
    const std::size_t len = strnlen(s, message.size() - pos);
    if (pos + len >= message.size()) return std::nullopt;
    const std::string_view value(s, len);
    if (code == 'V' || (code == 'S' && out.severity.empty())) out.severity = value;
    if (code == 'C') out.sqlstate = value;
    if (code == 'M') out.message = value;
    pos += len + 1;
  }
  return std::nullopt;
}

}  // namespace pgwarden::protocol
