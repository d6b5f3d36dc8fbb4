#include "policy/internal_login.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

namespace pgwarden::policy {

namespace {

std::string random_hex(std::size_t bytes) {
  unsigned char buf[32];
  if (bytes > sizeof buf || RAND_bytes(buf, static_cast<int>(bytes)) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    out.push_back(kHex[buf[i] >> 4]);
    out.push_back(kHex[buf[i] & 15]);
  }
  return out;
}

}  // namespace

std::optional<std::pair<std::string, std::string>> InternalLogins::issue(AuthenticatedCaller caller,
                                                                         std::int64_t now) {
  const std::string id = random_hex(12), password = random_hex(32);
  if (id.empty() || password.empty()) return std::nullopt;
  std::string user = std::string(kUserPrefix) + id;
  std::lock_guard lock(mu_);
  std::erase_if(pending_, [now](const auto& p) { return p.second.expires <= now; });
  if (pending_.size() >= kMaxPending) return std::nullopt;
  caller.mapping = nullptr;
  pending_[user] = Pending{password, now + kValidSeconds, std::move(caller)};
  return std::make_pair(std::move(user), password);
}

std::string InternalLogins::handover_token(std::string_view user, std::string_view password) {
  if (!user.starts_with(kUserPrefix)) return {};
  return std::string(kHandoverPrefix) + std::string(user.substr(kUserPrefix.size())) + "." +
         std::string(password);
}

std::optional<std::pair<std::string, std::string>> InternalLogins::from_handover_token(
    std::string_view token) {
  if (!token.starts_with(kHandoverPrefix)) return std::nullopt;
  token.remove_prefix(kHandoverPrefix.size());
  const std::size_t dot = token.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == token.size()) return std::nullopt;
  return std::make_pair(std::string(kUserPrefix) + std::string(token.substr(0, dot)),
                        std::string(token.substr(dot + 1)));
}

std::optional<AuthenticatedCaller> InternalLogins::take(std::string_view user,
                                                        std::string_view password,
                                                        std::int64_t now) {
  std::lock_guard lock(mu_);
  const auto it = pending_.find(std::string(user));
  if (it == pending_.end()) return std::nullopt;
  Pending p = std::move(it->second);
  pending_.erase(it);
  if (p.expires <= now || p.password.size() != password.size() ||
      CRYPTO_memcmp(p.password.data(), password.data(), password.size()) != 0) {
    return std::nullopt;
  }
  return std::move(p.caller);
}

}  // namespace pgwarden::policy
