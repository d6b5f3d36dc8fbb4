#include "core/locks.h"

#include <algorithm>

#include "protocol/json.h"

namespace pgwarden::core {

namespace {

bool iequal(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

void Locks::add(AccessLock l) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<List>();
  for (const AccessLock& old : *current_.load()) {
    if (old.until_us > l.since_us && !iequal(old.name, l.name)) next->push_back(old);
  }
  next->push_back(std::move(l));
  current_.store(std::move(next), std::memory_order_release);
}

bool Locks::remove(const std::string& name) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<List>(*current_.load());
  const auto before = next->size();
  std::erase_if(*next, [&](const AccessLock& l) { return iequal(l.name, name); });
  const bool removed = next->size() != before;
  current_.store(std::move(next), std::memory_order_release);
  return removed;
}

bool Locks::names(const AccessLock& l, const std::string& identity,
                  const std::vector<std::string>& groups, const std::string& principal) {
  return iequal(l.name, identity) ||
         std::find(groups.begin(), groups.end(), l.name) != groups.end() ||
         (!principal.empty() &&
          std::find(l.principals.begin(), l.principals.end(), principal) != l.principals.end());
}

bool Locks::names_actor(const AccessLock& l, const std::vector<std::string>& actors,
                        const std::vector<std::string>& actor_groups) {
  return std::any_of(actors.begin(), actors.end(),
                     [&](const std::string& a) { return iequal(l.name, a); }) ||
         std::find(actor_groups.begin(), actor_groups.end(), l.name) != actor_groups.end();
}

void Locks::learn(const std::string& name, const std::string& principal) {
  if (principal.empty()) return;
  std::lock_guard lock(mu_);
  auto next = std::make_shared<List>(*current_.load());
  for (AccessLock& l : *next) {
    if (iequal(l.name, name) && l.principals.size() < 64 &&
        std::find(l.principals.begin(), l.principals.end(), principal) == l.principals.end()) {
      l.principals.push_back(principal);
    }
  }
  current_.store(std::move(next), std::memory_order_release);
}

const AccessLock* Locks::find(const List* locks, const std::string& identity,
                              const std::vector<std::string>& groups, const std::string& principal,
                              std::int64_t now_us) {
  if (locks == nullptr) return nullptr;
  for (const AccessLock& l : *locks) {
    if (l.until_us > now_us && names(l, identity, groups, principal)) return &l;
  }
  return nullptr;
}

std::string Locks::list_json(std::int64_t now_us) const {
  const auto list = snapshot();
  std::string out = "[";
  for (const AccessLock& l : *list) {
    if (l.until_us <= now_us) continue;
    if (out.size() > 1) out += ",";
    out += "{\"name\":";
    protocol::append_json_string(out, l.name);
    out += ",\"since_us\":" + std::to_string(l.since_us) +
           ",\"until_us\":" + std::to_string(l.until_us) + ",\"by\":";
    protocol::append_json_string(out, l.by);
    out += ",\"reason\":";
    protocol::append_json_string(out, l.reason);
    out += "}";
  }
  return out + "]\n";
}

}  // namespace pgwarden::core
