#include "protocol/framer.h"

#include <algorithm>
#include <cstdio>

namespace pgwarden::protocol {

bool Framer::check_header() noexcept {
  char buf[160];
  if (!typed_) {
    const std::uint32_t len = read_u32(hdr_);
    if (len < kMinStartupPacket || len > kMaxStartupPacket) {
      std::snprintf(buf, sizeof buf, "invalid length of startup packet: %u", len);
      error_ = buf;
      return false;
    }
    type_ = 0;
    size_ = len;
    return true;
  }
  const auto type = static_cast<std::uint8_t>(hdr_[0]);
  const std::uint32_t len = read_u32(hdr_ + 1);
  const TypeInfo& info = type_info(side_, type);
  const char* who = side_ == Side::Frontend ? "frontend" : "backend";
  if (info.name.empty()) {
    std::snprintf(buf, sizeof buf, "invalid %s message type %u", who, unsigned{type});
    error_ = buf;
    return false;
  }
  // The length counts itself; bound it before anything is buffered or forwarded for it.
  if (len < info.min_len || (info.max_len != 0 && len > info.max_len) || len > max_size_ ||
      len > 0x7fffffffu - 1) {
    std::snprintf(buf, sizeof buf, "invalid %s message length %u for %.*s (limit %u)", who, len,
                  static_cast<int>(info.name.size()), info.name.data(), max_size_);
    error_ = buf;
    return false;
  }
  type_ = type;
  size_ = len + 1;
  return true;
}

Bytes Assembler::add(const Fragment& f, Bytes held_prefix) {
  if (f.first) {
    // The declared size reserves nothing before its bytes arrive: the buffer grows with them.
    buf_.clear();
    buf_.reserve(std::min<std::size_t>(f.size, kKeep));
    buf_.append(held_prefix.data(), held_prefix.size());
  }
  buf_.append(f.bytes.data(), f.bytes.size());
  if (!f.last) return {};
  return {buf_.data(), buf_.size()};
}

}  // namespace pgwarden::protocol
