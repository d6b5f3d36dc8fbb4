// The untyped packets a client may open a connection with: StartupMessage, SSLRequest,
// GSSENCRequest and CancelRequest (PostgreSQL docs, "Start-up" and "Canceling Requests").
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "protocol/framer.h"
#include "protocol/result.h"

namespace pgwarden::protocol {

inline constexpr std::uint32_t kProtocolV3 = 3u << 16;
inline constexpr std::uint32_t kSslRequestCode = (1234u << 16) | 5679u;
inline constexpr std::uint32_t kGssEncRequestCode = (1234u << 16) | 5680u;
inline constexpr std::uint32_t kCancelRequestCode = (1234u << 16) | 5678u;

// The identifying pair of a backend (BackendKeyData) as PostgreSQL sends it.
struct BackendKey {
  std::int32_t pid = 0;
  std::int32_t secret = 0;
  bool operator==(const BackendKey&) const = default;
};

enum class StartupKind : std::uint8_t { Startup, SslRequest, GssEncRequest, Cancel };

// A validated startup-phase packet; views point into the caller's packet bytes.
struct StartupPacket {
  StartupKind kind;
  std::uint16_t major = 0;
  std::uint16_t minor = 0;
  Bytes params;       // Startup: name\0value\0 ... pairs (without the final \0)
  BackendKey cancel;  // Cancel: the key the client holds
};

// Validates a whole startup-phase packet (length word included).
Result<StartupPacket> parse_startup(Bytes packet);

// Looks up a parameter in a StartupPacket's params; empty optional when absent.
std::optional<std::string_view> startup_param(Bytes params, std::string_view name) noexcept;

}  // namespace pgwarden::protocol
