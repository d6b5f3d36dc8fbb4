// Listen and upstream addresses: "HOST:PORT", "[v6]:PORT", or a unix socket path.
#pragma once

#include <sys/socket.h>

#include <string>

namespace pgwarden::core {

struct Address {
  sockaddr_storage storage{};
  socklen_t len = 0;
  std::string text;  // as the user wrote it, for messages

  int family() const noexcept { return storage.ss_family; }
  const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
};

// Resolves once, at start-up. A spec starting with '/' is a unix socket: a socket file, or a
// directory with an optional ":PORT" meaning PostgreSQL's socket in it (".s.PGSQL.PORT", port
// 5432 by default). Throws std::runtime_error.
Address resolve_address(const std::string& spec);

// "127.0.0.1:6432" for an AF_INET/AF_INET6 address, the path for AF_UNIX.
std::string format_address(const sockaddr* sa, socklen_t len);

}  // namespace pgwarden::core
