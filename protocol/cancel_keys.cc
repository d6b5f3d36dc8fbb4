#include "protocol/cancel_keys.h"

namespace pgwarden::protocol {
namespace {

// pid layout, high to low: 0 | core (8 bits) | slot+1 (22 bits) | 1. Always positive and
// non-zero, as clients expect of a process id.
constexpr std::int32_t make_pid(std::uint32_t core, std::uint32_t slot) noexcept {
  return static_cast<std::int32_t>((core << (kCancelSlotBits + 1)) | ((slot + 1) << 1) | 1u);
}

bool decode(std::int32_t pid, std::uint32_t& core, std::uint32_t& slot) noexcept {
  if (pid <= 0 || (pid & 1) == 0) return false;
  const auto u = static_cast<std::uint32_t>(pid);
  const std::uint32_t s = (u >> 1) & ((1u << kCancelSlotBits) - 1);
  if (s == 0) return false;
  core = u >> (kCancelSlotBits + 1);
  slot = s - 1;
  return true;
}

}  // namespace

std::optional<std::uint32_t> cancel_key_core(std::int32_t gateway_pid) noexcept {
  std::uint32_t core = 0, slot = 0;
  if (!decode(gateway_pid, core, slot)) return std::nullopt;
  return core;
}

BackendKey CancelKeyTable::issue(BackendKey upstream, std::int32_t secret) {
  std::uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(slots_.size());
    // Past the slot space the session still works; it just cannot be cancelled through us.
    if (slot >= (1u << kCancelSlotBits) - 1) return BackendKey{0, 0};
    slots_.push_back({});
  }
  slots_[slot] = Entry{upstream, secret, true};
  ++live_;
  return BackendKey{make_pid(core_, slot), secret};
}

std::optional<BackendKey> CancelKeyTable::lookup(BackendKey gateway) const noexcept {
  std::uint32_t core = 0, slot = 0;
  if (!decode(gateway.pid, core, slot) || core != core_ || slot >= slots_.size()) {
    return std::nullopt;
  }
  const Entry& e = slots_[slot];
  if (!e.used || e.secret != gateway.secret) return std::nullopt;
  return e.upstream;
}

void CancelKeyTable::release(BackendKey gateway) noexcept {
  std::uint32_t core = 0, slot = 0;
  if (!decode(gateway.pid, core, slot) || core != core_ || slot >= slots_.size()) return;
  Entry& e = slots_[slot];
  if (!e.used || e.secret != gateway.secret) return;
  e = Entry{};
  free_.push_back(slot);
  --live_;
}

}  // namespace pgwarden::protocol
