#include "protocol/cancel_keys.h"

namespace pgwarden::protocol {
namespace {

// pid layout, high to low: 0 | peer (5 bits) | core (8 bits) | slot+1 (17 bits) | issued (1).
// The low bit is 1 in every pid pgwarden hands out and 0 once a peer forwarded it. Always
// positive and non-zero, as clients expect of a process id.
constexpr unsigned kSlotShift = 1;
constexpr unsigned kCoreShift = kSlotShift + kCancelSlotBits;
constexpr unsigned kPeerShift = kCoreShift + kCancelCoreBits;
static_assert(kPeerShift + kCancelPeerBits == 31, "the pid's sign bit stays clear");

constexpr std::int32_t make_pid(std::uint32_t peer, std::uint32_t core,
                                std::uint32_t slot) noexcept {
  return static_cast<std::int32_t>((peer << kPeerShift) | (core << kCoreShift) |
                                   ((slot + 1) << kSlotShift) | 1u);
}

struct Decoded {
  CancelRoute route;
  std::uint32_t slot;
};

std::optional<Decoded> decode(std::int32_t pid) noexcept {
  if (pid <= 0) return std::nullopt;
  const auto u = static_cast<std::uint32_t>(pid);
  const std::uint32_t s = (u >> kSlotShift) & ((1u << kCancelSlotBits) - 1);
  if (s == 0) return std::nullopt;
  Decoded d;
  d.route.peer = u >> kPeerShift;
  d.route.core = (u >> kCoreShift) & (kMaxCancelCores - 1);
  d.route.forwarded = (u & 1u) == 0;
  d.slot = s - 1;
  return d;
}

}  // namespace

std::optional<CancelRoute> cancel_key_route(std::int32_t gateway_pid) noexcept {
  const auto d = decode(gateway_pid);
  if (!d) return std::nullopt;
  return d->route;
}

std::int32_t cancel_key_mark_forwarded(std::int32_t gateway_pid) noexcept {
  return gateway_pid & ~1;
}

std::int32_t cancel_key_unmark_forwarded(std::int32_t gateway_pid) noexcept {
  return gateway_pid | 1;
}

std::optional<std::uint32_t> CancelKeyTable::own_slot(std::int32_t pid) const noexcept {
  const auto d = decode(pid);
  if (!d || d->route.forwarded || d->route.core != core_ || d->route.peer != peer_ ||
      d->slot >= slots_.size()) {
    return std::nullopt;
  }
  return d->slot;
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
  return BackendKey{make_pid(peer_, core_, slot), secret};
}

std::optional<BackendKey> CancelKeyTable::lookup(BackendKey gateway) const noexcept {
  const auto slot = own_slot(gateway.pid);
  if (!slot) return std::nullopt;
  const Entry& e = slots_[*slot];
  if (!e.used || e.secret != gateway.secret) return std::nullopt;
  return e.upstream;
}

void CancelKeyTable::release(BackendKey gateway) noexcept {
  const auto slot = own_slot(gateway.pid);
  if (!slot) return;
  Entry& e = slots_[*slot];
  if (!e.used || e.secret != gateway.secret) return;
  e = Entry{};
  free_.push_back(*slot);
  --live_;
}

}  // namespace pgwarden::protocol
