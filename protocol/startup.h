// The untyped packets a client may open a connection with: StartupMessage, SSLRequest,
// GSSENCRequest and CancelRequest (PostgreSQL docs, "Start-up" and "Canceling Requests").
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

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

// Calls f(name, value) for each parameter of a StartupPacket's params.
template <class F>
void for_each_startup_param(Bytes params, F&& f) {
  std::string_view all(reinterpret_cast<const char*>(params.data()), params.size());
  while (!all.empty()) {
    const std::size_t nul = all.find('\0');
    if (nul == std::string_view::npos) return;
    const std::string_view key = all.substr(0, nul);
    all.remove_prefix(nul + 1);
    const std::size_t vnul = all.find('\0');
    f(key, all.substr(0, vnul));
    if (vnul == std::string_view::npos) return;
    all.remove_prefix(vnul + 1);
  }
}

// Appends a protocol 3.0 StartupMessage with the given parameters.
void append_startup_message(std::basic_string<std::byte>& out,
                            const std::vector<std::pair<std::string, std::string>>& params);

// Looks up a parameter in a StartupPacket's params; empty optional when absent.
std::optional<std::string_view> startup_param(Bytes params, std::string_view name) noexcept;

}  // namespace pgwarden::protocol
