#include "protocol/startup.h"

#include <cstdio>
#include <cstring>

namespace pgwarden::protocol {
namespace {

Error malformed(const char* what) {
  return Error{Errc::Malformed, what};
}

// Checks the name\0value\0...\0 list; returns the pairs without the final terminator.
Result<Bytes> check_params(Bytes body) {
  if (body.empty() || body.back() != std::byte{0}) {
    return malformed("invalid startup packet layout: expected terminator as last byte");
  }
  std::size_t pos = 0;
  const std::size_t end = body.size() - 1;
  bool has_user = false;
  while (pos < end) {
    const auto* name = reinterpret_cast<const char*>(body.data() + pos);
    const std::size_t name_len = strnlen(name, end - pos);
    if (pos + name_len >= end) return malformed("invalid startup packet layout: missing value");
    const std::size_t value_pos = pos + name_len + 1;
    const auto* value = reinterpret_cast<const char*>(body.data() + value_pos);
    const std::size_t value_len = strnlen(value, end - value_pos);
    if (value_pos + value_len >= end) {
      return malformed("invalid startup packet layout: unterminated value");
    }
    if (name_len == 0) return malformed("invalid startup packet layout: empty parameter name");
    if (std::string_view(name, name_len) == "user" && value_len > 0) has_user = true;
    pos = value_pos + value_len + 1;
  }
  if (pos != end) return malformed("invalid startup packet layout: expected terminator");
  if (!has_user) {
    return Error{Errc::Rejected, "no PostgreSQL user name specified in startup packet"};
  }
  return body.first(end);
}

}  // namespace

Result<StartupPacket> parse_startup(Bytes packet) {
  if (packet.size() < kMinStartupPacket || packet.size() > kMaxStartupPacket ||
      read_u32(packet.data()) != packet.size()) {
    return malformed("invalid length of startup packet");
  }
  const std::uint32_t code = read_u32(packet.data() + 4);
  StartupPacket out{};
  switch (code) {
    case kSslRequestCode:
    case kGssEncRequestCode:
      if (packet.size() != 8) return malformed("invalid length of encryption request packet");
      out.kind = code == kSslRequestCode ? StartupKind::SslRequest : StartupKind::GssEncRequest;
      return out;
    case kCancelRequestCode:
      if (packet.size() != 16) return malformed("invalid length of cancel request packet");
      out.kind = StartupKind::Cancel;
      out.cancel.pid = static_cast<std::int32_t>(read_u32(packet.data() + 8));
      out.cancel.secret = static_cast<std::int32_t>(read_u32(packet.data() + 12));
      return out;
    default:
      break;
  }
  out.kind = StartupKind::Startup;
  out.major = static_cast<std::uint16_t>(code >> 16);
  out.minor = static_cast<std::uint16_t>(code & 0xffff);
  if (out.major != 3) {
    char buf[128];
    std::snprintf(buf, sizeof buf,
                  "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
                  unsigned{out.major}, unsigned{out.minor});
    return Error{Errc::Unsupported, buf};
  }
  auto params = check_params(packet.subspan(8));
  if (!params) return params.error();
  out.params = *params;
  return out;
}

void append_startup_message(std::basic_string<std::byte>& out,
                            const std::vector<std::pair<std::string, std::string>>& params) {
  const std::size_t start = out.size();
  auto put_u32 = [&out](std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(std::byte(v >> s));
  };
  auto put_cstr = [&out](std::string_view s) {
    out.append(reinterpret_cast<const std::byte*>(s.data()), s.size());
    out.push_back(std::byte{0});
  };
  put_u32(0);
  put_u32(kProtocolV3);
  for (const auto& [k, v] : params) {
    put_cstr(k);
    put_cstr(v);
  }
  out.push_back(std::byte{0});
  const auto len = static_cast<std::uint32_t>(out.size() - start);
  for (int i = 0; i < 4; ++i) out[start + i] = std::byte(len >> (24 - 8 * i));
}

std::optional<std::string_view> startup_param(Bytes params, std::string_view name) noexcept {
  std::string_view all(reinterpret_cast<const char*>(params.data()), params.size());
  while (!all.empty()) {
    const std::size_t nul = all.find('\0');
    if (nul == std::string_view::npos) return std::nullopt;
    const std::string_view key = all.substr(0, nul);
    all.remove_prefix(nul + 1);
    const std::size_t vnul = all.find('\0');
    const std::string_view value = all.substr(0, vnul);
    if (key == name) return value;
    if (vnul == std::string_view::npos) return std::nullopt;
    all.remove_prefix(vnul + 1);
  }
  return std::nullopt;
}

}  // namespace pgwarden::protocol
