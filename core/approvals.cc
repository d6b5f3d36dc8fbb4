#include "core/approvals.h"

#include <ctime>

#include "core/worker.h"
#include "protocol/json.h"

namespace pgwarden::core {

std::uint64_t Approvals::request(Pending p) {
  std::lock_guard lock(mu_);
  const std::uint64_t id = next_id_++;
  pending_.emplace(id, std::move(p));
  return id;
}

bool Approvals::withdraw(std::uint64_t id) {
  std::lock_guard lock(mu_);
  return pending_.erase(id) != 0;
}

bool Approvals::decide(std::uint64_t id, bool approved, const std::string& approver) {
  Pending p;
  {
    std::lock_guard lock(mu_);
    const auto it = pending_.find(id);
    if (it == pending_.end()) return false;
    p = std::move(it->second);
    pending_.erase(it);
  }
  if (workers_ != nullptr && p.core < workers_->size()) {
    (*workers_)[p.core]->mailbox().post_approval(
        ApprovalDecision{id, p.session, approved, approver});
  }
  return true;
}

std::string Approvals::list_json() const {
  std::lock_guard lock(mu_);
  std::string out = "[";
  for (const auto& [id, p] : pending_) {
    if (out.size() > 1) out += ",";
    char session[20];
    std::snprintf(session, sizeof session, "%016llx", static_cast<unsigned long long>(p.session));
    out += "{\"id\":" + std::to_string(id) + ",\"session\":\"" + session + "\",\"identity\":";
    protocol::append_json_string(out, p.identity);
    out += ",\"statement\":";
    protocol::append_json_string(out, p.statement);
    out += ",\"rule\":";
    protocol::append_json_string(out, p.rule);
    out += ",\"reason\":";
    protocol::append_json_string(out, p.reason);
    out += ",\"requested_at_us\":" + std::to_string(p.requested_at_us) + "}";
  }
  out += "]\n";
  return out;
}

}  // namespace pgwarden::core
