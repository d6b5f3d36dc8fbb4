#include "core/stages/approval_stage.h"

#include <ctime>

#include "core/flags.h"
#include "core/log.h"
#include "core/record_sink.h"
#include "core/worker.h"
#include "policy/rules.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;

void ApprovalStage::on_frontend(FrontendMessage& m) {
  if (m.verdict != Verdict::Forward || m.decision == nullptr ||
      m.decision->action != policy::Action::Hold) {
    return;
  }
  const policy::Decision& d = *m.decision;
  // A statement that cannot be recorded is not held: the recording stage refuses it.
  if (host_.core().recorder != nullptr && !host_.core().recorder->accepting()) return;
  Approvals* approvals = host_.core().approvals;
  if (approvals == nullptr) {
    m.refuse(pr::sqlstate::kInsufficientPrivilege, policy::refusal_message(d));
    return;
  }
  const std::string rule = d.rule != nullptr ? d.rule->name : "";
  Approvals::Pending p;
  p.core = host_.core().core;
  p.session = host_.session_id();
  p.identity = host_.caller().identity;
  p.statement = m.view.query
                    ? std::string(m.view.text)
                    : "(bind of prepared statement \"" + std::string(m.view.statement) + "\")";
  p.rule = rule;
  p.reason = d.reason;
  if (d.rule != nullptr) {
    p.approvers = host_.core().policy->approvers_of(*d.rule);
    p.required = d.rule->approvals_required;
  }
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  p.requested_at_us = std::int64_t(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
  const std::string text = p.statement;
  const std::size_t approver_groups = p.approvers.size();
  id_ = approvals->request(std::move(p));
  waiting_ = true;
  since_ns_ = host_.core().now_ns;
  policy_id_ = host_.core().policy->id();
  message_ =
      "pgwarden: statement held for approval under policy rule \"" + rule + "\" (" + d.reason + ")";
  m.verdict = Verdict::Hold;
  const std::string id = approval_id_text(id_);
  PGW_WARN(
      "approval %s requested: %s wants to run [%.*s] (rule %s, %s); decide with pgwarden "
      "approvals approve|deny %s%s",
      id.c_str(), host_.caller().identity.c_str(),
      static_cast<int>(std::min<std::size_t>(text.size(), 200)), text.data(), rule.c_str(),
      d.reason.c_str(), id.c_str(),
      approver_groups == 0 ? " (the policy names no approvers or admins: nobody can approve it)"
                           : "");
}

void ApprovalStage::on_decision(const ApprovalDecision& d) {
  if (!waiting_ || d.id != id_) return;
  std::string outcome = (d.approved ? "approved by " : "denied by ") +
                        (d.approver.empty() ? std::string("an approver") : d.approver);
  if (!d.reason.empty()) outcome += ": " + d.reason;
  finish(d.approved, outcome);
}

void ApprovalStage::finish(bool approved, const std::string& outcome) {
  waiting_ = false;
  PGW_INFO("approval %s: %s", approval_id_text(id_).c_str(), outcome.c_str());
  const policy::Policy* pol = host_.core().policy;
  if (approved && (pol == nullptr || pol->id() != policy_id_)) {
    // The statement was judged under a policy no longer in force: the approval does not carry
    // over to a judgement nobody made. It is refused; sent again, it is judged afresh.
    const std::string why = outcome + ", but the policy was reloaded while it waited";
    host_.decide_held(false, pr::sqlstate::kInsufficientPrivilege,
                      message_ + " was " + why +
                          "; send it again to have it judged under the "
                          "policy in force",
                      why);
    return;
  }
  host_.decide_held(approved, pr::sqlstate::kInsufficientPrivilege,
                    approved ? std::string() : message_ + " was " + outcome, outcome);
}

void ApprovalStage::on_close() {
  if (!waiting_) return;
  waiting_ = false;
  host_.core().approvals->withdraw(id_);
}

void ApprovalStage::on_tick(std::int64_t now_ns) {
  if (!waiting_) return;
  const double limit_s = host_.core().config->approval_timeout_s;
  if (now_ns - since_ns_ <= static_cast<std::int64_t>(limit_s * 1e9)) return;
  if (!host_.core().approvals->withdraw(id_)) return;  // decided meanwhile: the mailbox has it
  char outcome[96];
  std::snprintf(outcome, sizeof outcome, "not decided within %g s", limit_s);
  finish(false, outcome);
}

}  // namespace pgwarden::core
