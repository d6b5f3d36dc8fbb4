// Gateway-issued cancel keys. Each client gets its own BackendKeyData from pgwarden; the pid
// encodes the gateway instance (--peer-id), the owning core and a slot, so whichever instance
// and core accepts a CancelRequest can route it to the owner, which maps it to the real upstream
// key. Sans-I/O; one table per core.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "protocol/startup.h"

namespace pgwarden::protocol {

inline constexpr unsigned kCancelPeerBits = 5;   // instances 1..31 (0: no peering)
inline constexpr unsigned kCancelCoreBits = 8;   // up to 256 cores
inline constexpr unsigned kCancelSlotBits = 17;  // up to 131,071 live sessions per core
inline constexpr std::uint32_t kMaxCancelCores = 1u << kCancelCoreBits;
inline constexpr std::uint32_t kMaxCancelPeer = (1u << kCancelPeerBits) - 1;

// Where a gateway pid points: the instance and core that issued it. `forwarded` marks a key a
// peer passed on (a pid pgwarden issues never carries it); such a request is never passed on
// again, so misconfigured peers cannot bounce one between them.
struct CancelRoute {
  std::uint32_t peer = 0;
  std::uint32_t core = 0;
  bool forwarded = false;
};

// The route of a gateway pid, or nullopt for a pid pgwarden never issues.
std::optional<CancelRoute> cancel_key_route(std::int32_t gateway_pid) noexcept;
// The pid as a peer forwards it, and back as it was issued.
std::int32_t cancel_key_mark_forwarded(std::int32_t gateway_pid) noexcept;
std::int32_t cancel_key_unmark_forwarded(std::int32_t gateway_pid) noexcept;

// Owned by one core; not thread-safe by design.
class CancelKeyTable {
 public:
  explicit CancelKeyTable(std::uint32_t core, std::uint32_t peer = 0) noexcept
      : core_(core), peer_(peer) {}

  // Registers an upstream key and returns the key to hand the client; `secret` must be random.
  BackendKey issue(BackendKey upstream, std::int32_t secret);
  // The upstream key for a client-presented key, or nullopt (unknown, stale or wrong secret).
  std::optional<BackendKey> lookup(BackendKey gateway) const noexcept;
  // Forgets a key issued by this table (session ended). Unknown keys are ignored.
  void release(BackendKey gateway) noexcept;
  std::size_t live() const noexcept { return live_; }

 private:
  struct Entry {
    BackendKey upstream;
    std::int32_t secret;
    bool used;
  };
  // The slot of a key this table issued (and not marked forwarded), or nullopt.
  std::optional<std::uint32_t> own_slot(std::int32_t pid) const noexcept;
  std::uint32_t core_;
  std::uint32_t peer_;
  std::vector<Entry> slots_;
  std::vector<std::uint32_t> free_;
  std::size_t live_ = 0;
};

}  // namespace pgwarden::protocol
