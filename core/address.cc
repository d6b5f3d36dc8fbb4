#include "core/address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>
#include <stdexcept>

namespace pgwarden::core {

Address resolve_address(const std::string& spec) {
  Address out;
  out.text = spec;
  if (!spec.empty() && spec[0] == '/') {
    // A socket file, or as libpq: a directory (and port) naming PostgreSQL's socket in it.
    std::string path = spec;
    std::string port = "5432";
    const auto colon = spec.rfind(':');
    if (colon != std::string::npos && colon + 1 < spec.size() &&
        spec.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
      path = spec.substr(0, colon);
      port = spec.substr(colon + 1);
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) path += "/.s.PGSQL." + port;
    sockaddr_un un{};
    if (path.size() >= sizeof un.sun_path) throw std::runtime_error("unix socket path too long");
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path.c_str(), path.size() + 1);
    std::memcpy(&out.storage, &un, sizeof un);
    out.len = sizeof un;
    return out;
  }
  std::string host, port;
  if (!spec.empty() && spec[0] == '[') {
    const auto close = spec.find(']');
    if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':') {
      throw std::runtime_error("bad address '" + spec + "': expected [IPv6]:PORT");
    }
    host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else {
    const auto colon = spec.rfind(':');
    if (colon == std::string::npos) {
      throw std::runtime_error("bad address '" + spec + "': expected HOST:PORT or a socket path");
    }
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
  }
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535) {
    throw std::runtime_error("bad port in address '" + spec + "'");
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    throw std::runtime_error("cannot resolve '" + spec + "': " + gai_strerror(rc));
  }
  std::memcpy(&out.storage, res->ai_addr, res->ai_addrlen);
  out.len = res->ai_addrlen;
  ::freeaddrinfo(res);
  return out;
}

std::string format_address(const sockaddr* sa, socklen_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    std::string out(host);
    out += ':';
    out += std::to_string(ntohs(in->sin_port));
    return out;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    std::string out = "[";
    out += host;
    out += "]:";
    out += std::to_string(ntohs(in6->sin6_port));
    return out;
  }
  if (sa->sa_family == AF_UNIX && len > sizeof(sa_family_t)) {
    return reinterpret_cast<const sockaddr_un*>(sa)->sun_path;
  }
  return "?";
}

}  // namespace pgwarden::core
