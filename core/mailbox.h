// A worker's inbox for the rare cross-core messages (a CancelRequest accepted by another core, an
// approval decided on the admin endpoint),
// plus the wake-up eventfd the worker keeps a read armed on. The only lock in the process
// guards this queue; the data path never touches it.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "core/admin_query.h"
#include "core/approvals.h"
#include "protocol/startup.h"

namespace pgwarden::core {

class Mailbox {
 public:
  Mailbox() : efd_(::eventfd(0, EFD_CLOEXEC)) {
    if (efd_ < 0) throw std::runtime_error("eventfd failed");
  }
  ~Mailbox() { ::close(efd_); }
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // From any thread: queue a cancel for the owning core and wake it.
  void post_cancel(protocol::BackendKey key) {
    {
      std::lock_guard lock(mu_);
      cancels_.push_back(key);
    }
    wake();
  }
  // From any thread: an approval decided for one of the owner's sessions.
  void post_approval(ApprovalDecision d) {
    {
      std::lock_guard lock(mu_);
      approvals_.push_back(std::move(d));
    }
    wake();
  }
  // From any thread: a question from the admin API about the owner's sessions.
  void post_query(AdminQueryPtr q) {
    {
      std::lock_guard lock(mu_);
      queries_.push_back(std::move(q));
    }
    wake();
  }
  // From any thread: an administrator's action to record.
  void post_record(AdminRecord r) {
    {
      std::lock_guard lock(mu_);
      records_.push_back(std::move(r));
    }
    wake();
  }
  std::vector<AdminRecord> take_records() {
    std::lock_guard lock(mu_);
    return std::exchange(records_, {});
  }
  std::vector<AdminQueryPtr> take_queries() {
    std::lock_guard lock(mu_);
    return std::exchange(queries_, {});
  }
  std::vector<ApprovalDecision> take_approvals() {
    std::lock_guard lock(mu_);
    return std::exchange(approvals_, {});
  }
  // From any thread: wake the owner (it then re-reads shared control state).
  void wake() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(efd_, &one, sizeof one);
  }
  // Owner only: take everything queued.
  std::vector<protocol::BackendKey> take_cancels() {
    std::lock_guard lock(mu_);
    return std::exchange(cancels_, {});
  }
  int fd() const noexcept { return efd_; }

 private:
  int efd_;
  std::mutex mu_;
  std::vector<protocol::BackendKey> cancels_;
  std::vector<ApprovalDecision> approvals_;
  std::vector<AdminQueryPtr> queries_;
  std::vector<AdminRecord> records_;
};

}  // namespace pgwarden::core
