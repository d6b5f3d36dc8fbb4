// A question from the admin API to one core about its sessions, carried by the core's mailbox
// and answered through a promise (the admin thread waits a bounded time for every core).
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <string>

namespace pgwarden::core {

struct AdminQuery {
  enum class Kind : std::uint8_t {
    List,          // reply: the core's sessions as JSON objects joined by ','
    Kill,          // end session `session`; reply: "1" when this core had it, else "0"
    KillMatching,  // end every session of identity or group `name` (or of an account the lock
                   // on it learned); reply: how many, then their accounts, one per line
  };
  Kind kind = Kind::List;
  std::uint64_t session = 0;
  std::string name;
  std::string message;  // Kill, KillMatching: what the client is told (FATAL 57P01)
  std::promise<std::string> reply;
};

using AdminQueryPtr = std::shared_ptr<AdminQuery>;

// An administrator's action, for core 0's recording (an `admin` record).
struct AdminRecord {
  std::string identity, client;  // who, from where
  std::string action, target;    // what, on what
  std::string result, reason;    // what came of it, and why they did it
};

}  // namespace pgwarden::core
