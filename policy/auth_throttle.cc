#include "policy/auth_throttle.h"

namespace pgwarden::policy {

void AuthThrottle::expire(std::int64_t now) {
  // Sweep at most once a window so the table stays bounded by the addresses of one window.
  if (now - last_sweep_ < window_s_) return;
  last_sweep_ = now;
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = now - it->second.window_start >= window_s_ ? entries_.erase(it) : std::next(it);
  }
}

bool AuthThrottle::blocked(std::string_view address, std::int64_t now) {
  if (max_failures_ == 0) return false;
  expire(now);
  const auto it = entries_.find(std::string(address));
  if (it == entries_.end()) return false;
  if (now - it->second.window_start >= window_s_) {
    entries_.erase(it);
    return false;
  }
  return it->second.failures >= max_failures_;
}

void AuthThrottle::record_failure(std::string_view address, std::int64_t now) {
  if (max_failures_ == 0) return;
  Entry& e = entries_[std::string(address)];
  if (e.failures == 0 || now - e.window_start >= window_s_) e = Entry{0, now};
  ++e.failures;
}

}  // namespace pgwarden::policy
