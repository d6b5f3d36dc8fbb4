// Rate limit on failed authentications per source address, one table per core (no sharing:
// with N cores an address gets at most N times the limit). Sans-I/O; the caller passes the time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pgwarden::policy {

class AuthThrottle {
 public:
  AuthThrottle(std::uint32_t max_failures, std::int64_t window_s)
      : max_failures_(max_failures), window_s_(window_s) {}

  // True while `address` has used up its failures for the current window.
  bool blocked(std::string_view address, std::int64_t now);
  void record_failure(std::string_view address, std::int64_t now);
  std::size_t tracked() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    std::uint32_t failures = 0;
    std::int64_t window_start = 0;
  };
  void expire(std::int64_t now);

  std::uint32_t max_failures_;
  std::int64_t window_s_;
  std::int64_t last_sweep_ = 0;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace pgwarden::policy
