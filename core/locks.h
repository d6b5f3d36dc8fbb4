// Access locks (POST /api/v1/locks): an identity or a group that may not log in until the lock
// expires or is removed; its open sessions are ended when it is set. The list is an immutable
// snapshot swapped whole, so a login reads it without a lock; only administrators change it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pgwarden::core {

struct AccessLock {
  std::string name;  // an identity (compared without regard to case) or a group
  std::int64_t since_us = 0, until_us = 0;  // wall clock
  std::string by, reason;
  // The accounts (issuer and subject) seen under this name: their tokens are locked out too,
  // whatever identity claim they carry.
  std::vector<std::string> principals;
};

class Locks {
 public:
  using List = std::vector<AccessLock>;
  // Sets (or replaces) the lock on `l.name`; expired locks are dropped.
  void add(AccessLock l);
  bool remove(const std::string& name);
  // Adds an account seen under the lock on `name` (a session it ended, or a refused login).
  void learn(const std::string& name, const std::string& principal);
  std::shared_ptr<const List> snapshot() const { return current_.load(std::memory_order_acquire); }
  std::string list_json(std::int64_t now_us) const;

  // The lock in force on a caller at `now_us`, or null.
  static const AccessLock* find(const List* locks, const std::string& identity,
                                const std::vector<std::string>& groups,
                                const std::string& principal, std::int64_t now_us);
  static bool names(const AccessLock& l, const std::string& identity,
                    const std::vector<std::string>& groups, const std::string& principal = {});
  // The lock names one of the agents acting for a caller (a token's act chain), or the agent's
  // groups (the policy's may_act).
  static bool names_actor(const AccessLock& l, const std::vector<std::string>& actors,
                          const std::vector<std::string>& actor_groups);

 private:
  std::mutex mu_;  // writers
  std::atomic<std::shared_ptr<const List>> current_{std::make_shared<const List>()};
};

}  // namespace pgwarden::core
