// Gateway-issued cancel keys. Each client gets its own BackendKeyData from pgwarden; the pid
// encodes the owning core and a slot so whichever core accepts a CancelRequest can route it to
// the owner, which maps it to the real upstream key. Sans-I/O; one table per core.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "protocol/startup.h"

namespace pgwarden::protocol {

inline constexpr unsigned kCancelCoreBits = 8;   // up to 256 cores
inline constexpr unsigned kCancelSlotBits = 22;  // up to ~4M live sessions per core
inline constexpr std::uint32_t kMaxCancelCores = 1u << kCancelCoreBits;

// The core that issued a gateway pid, or nullopt for a pid pgwarden never issues.
std::optional<std::uint32_t> cancel_key_core(std::int32_t gateway_pid) noexcept;

// Owned by one core; not thread-safe by design.
class CancelKeyTable {
 public:
  explicit CancelKeyTable(std::uint32_t core) noexcept : core_(core) {}

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
  std::uint32_t core_;
  std::vector<Entry> slots_;
  std::vector<std::uint32_t> free_;
  std::size_t live_ = 0;
};

}  // namespace pgwarden::protocol
