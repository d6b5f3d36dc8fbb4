#include "core/log_limiter.h"

#include <cstring>

namespace pgwarden::core {

LogLimiter::Slot* LogLimiter::find(const void* site) noexcept {
  auto h = reinterpret_cast<std::uintptr_t>(site);
  h ^= h >> 17;
  h *= 0x9E3779B97F4A7C15ull;
  for (std::size_t probe = 0; probe < kSites; ++probe) {
    Slot& slot = slots_[(h + probe) & (kSites - 1)];
    if (slot.site == site) return &slot;
    if (slot.site == nullptr) {
      slot.site = site;
      return &slot;
    }
  }
  return nullptr;
}

bool LogLimiter::take_summary(Slot& slot, std::int64_t now_ns, Summary& out, bool now) noexcept {
  if (now_ns - slot.window_start < kWindowNs && !(now && slot.suppressed > 0)) return false;
  const bool had = slot.suppressed > 0;
  if (had) {
    out = slot.last;
    out.repeated = slot.suppressed;
    out.interval_s = static_cast<double>(now_ns - slot.window_start) / 1e9;
    --waiting_;
  }
  slot.window_start = now_ns;
  slot.written = 0;
  slot.suppressed = 0;
  return had;
}

bool LogLimiter::admit(const void* site, std::int64_t now_ns, LogLevel level, int core,
                       std::string_view message, Summary& pending, bool& has_pending) noexcept {
  has_pending = false;
  if (per_second_ == 0) return true;
  Slot* slot = find(site);
  if (slot == nullptr) return true;
  if (slot->written == 0 && slot->suppressed == 0) {
    slot->window_start = now_ns;
  } else {
    has_pending = take_summary(*slot, now_ns, pending);
  }
  if (slot->written < per_second_) {
    ++slot->written;
    return true;
  }
  if (slot->suppressed++ == 0) ++waiting_;
  ++suppressed_total_;
  // Keep the last message, cut before a partial UTF-8 sequence.
  std::size_t n = std::min(message.size(), kKeptText);
  if (n < message.size()) {
    while (n > 0 && (static_cast<unsigned char>(message[n]) & 0xC0) == 0x80) --n;
  }
  std::memcpy(slot->last.text, message.data(), n);
  slot->last.length = n;
  slot->last.level = level;
  slot->last.core = core;
  return false;
}

}  // namespace pgwarden::core
