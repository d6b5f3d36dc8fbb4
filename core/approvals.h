// Statements held for a human's approval (rules' require_approval, with --admin-listen): a
// process-wide registry the admin endpoint lists and decides, each entry owned by the core whose
// session waits. A decision travels to that core's mailbox; the session then forwards or refuses
// the statement. Off the data path (only held statements touch it), so a mutex is fine.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace pgwarden::core {

class Worker;

struct ApprovalDecision {
  std::uint64_t id = 0;
  std::uint64_t session = 0;
  bool approved = false;
  std::string approver;
};

class Approvals {
 public:
  struct Pending {
    unsigned core = 0;
    std::uint64_t session = 0;
    std::string identity, statement, rule, reason;
    std::int64_t requested_at_us = 0;
  };
  // `workers` (indexed by core) must outlive this object; set before any session runs.
  void set_workers(const std::vector<Worker*>* workers) { workers_ = workers; }

  std::uint64_t request(Pending p);
  // Withdraws a request (the session ended, or the wait timed out); false if already decided.
  bool withdraw(std::uint64_t id);
  // Decides a pending request and posts the decision to its core; false if it is not pending.
  bool decide(std::uint64_t id, bool approved, const std::string& approver);
  std::string list_json() const;

 private:
  mutable std::mutex mu_;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, Pending> pending_;
  const std::vector<Worker*>* workers_ = nullptr;
};

}  // namespace pgwarden::core
