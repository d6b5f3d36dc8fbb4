// Statements held for a human's approval (rules' require_approval, with --admin-listen): a
// process-wide registry the admin API lists and decides, each entry owned by the core whose
// session waits. Who may decide is fixed when the statement is held (the rule's approvers, or
// the policy's admins); nobody decides their own statement, and a rule may want two approvers.
// A decision travels to the owning core's mailbox; the session then forwards or refuses the
// statement. Off the data path (only held statements touch it), so a mutex is fine.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace pgwarden::core {

class Notifier;
class Worker;

struct ApprovalDecision {
  std::uint64_t id = 0;
  std::uint64_t session = 0;
  bool approved = false;
  std::string approver;  // who decided (approved: every approver, comma-separated)
  std::string reason;    // the approver's reason, may be empty
};

// An authenticated admin API caller (from the bearer token, never from the request).
struct AdminCaller {
  std::string identity;
  std::vector<std::string> groups;
  std::string principal;  // issuer and subject (policy::CallerIdentity::principal)
  bool in_any(const std::vector<std::string>& wanted) const;
};

// Ids are random (not guessable from another request's) and shown as 16 hex digits.
std::string approval_id_text(std::uint64_t id);
bool parse_approval_id(const std::string& text, std::uint64_t& id);

class Approvals {
 public:
  struct Pending {
    unsigned core = 0;
    std::uint64_t session = 0;
    std::string identity;   // who asked
    std::string principal;  // ... as issuer and subject ("" without gateway authentication)
    std::vector<std::string> actors;  // agents acting for them (a token's act chain)
    std::string statement, rule, reason;
    std::string tool, intent;            // an MCP tool call's (what the agent says it is for)
    std::vector<std::string> approvers;  // groups that may decide
    unsigned required = 1;               // distinct approvals it takes
    std::int64_t requested_at_us = 0;
    std::vector<std::string> approved_by;  // so far
    std::vector<std::string> approved_principals;
  };
  // `workers` (indexed by core) must outlive this object; set before any session runs.
  void set_workers(const std::vector<Worker*>* workers) { workers_ = workers; }
  // Webhooks told of each held statement and decision (null: none). Set before sessions run.
  void set_notifier(Notifier* notifier) { notifier_ = notifier; }

  std::uint64_t request(Pending p);
  // Withdraws a request (`why`: the session ended, or the wait timed out); false if already
  // decided.
  bool withdraw(std::uint64_t id, const std::string& why = "withdrawn");

  enum class Outcome {
    Decided,         // approved (enough approvals) or denied: posted to the session's core
    Counted,         // one more approval; more are needed
    NotFound,        // not pending (decided, withdrawn, or never held)
    NotApprover,     // the caller is in none of the approver groups
    OwnStatement,    // four eyes: the caller asked for it
    AlreadyCounted,  // the caller approved it already
  };
  Outcome decide(std::uint64_t id, bool approved, const AdminCaller& by, const std::string& reason);
  // The pending statements `by` may decide (admins: all), as a JSON array.
  std::string list_json(const AdminCaller& by, const std::vector<std::string>& admins) const;
  // For /metrics: statements waiting now, and when the oldest was held (0: none).
  struct Waiting {
    std::size_t count = 0;
    std::int64_t oldest_us = 0;
  };
  Waiting waiting() const;

 private:
  mutable std::mutex mu_;
  std::map<std::uint64_t, Pending> pending_;
  const std::vector<Worker*>* workers_ = nullptr;
  Notifier* notifier_ = nullptr;
};

}  // namespace pgwarden::core
