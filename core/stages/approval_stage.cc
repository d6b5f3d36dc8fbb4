#include "core/stages/approval_stage.h"

#include <ctime>

#include "core/flags.h"
#include "core/log.h"
#include "core/record_sink.h"
#include "core/worker.h"
#include "policy/parse_tree.h"
#include "policy/rules.h"
#include "policy/sqlcommenter.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;

std::string ApprovalStage::grant_key(const FrontendMessage& m) const {
  const policy::Decision& d = *m.decision;
  if (d.rule == nullptr || d.rule->grant_seconds <= 0 || m.view.type != pr::fe::kQuery) return {};
  std::string shape;
  if (!policy::shape_of(m.view.text, shape)) shape.assign(m.view.text);
  return d.rule->name + '\0' + std::to_string(d.classes) + '\0' + shape;
}

void ApprovalStage::maybe_end_grants(const FrontendMessage& m) {
  bool ends = m.decision != nullptr &&
              (m.decision->classes & (policy::bit(policy::StatementClass::Set) |
                                      policy::bit(policy::StatementClass::RoleChange))) != 0;
  if (!ends && m.view.query) {
    std::string text(m.view.text.substr(0, 1 << 20));
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const char* w :
         {"search_path", "reset", "discard", "set_config", "role", "authorization"}) {
      ends = ends || text.find(w) != std::string::npos;
    }
  }
  if (!ends) return;
  PGW_INFO("session %016llx: JIT grants end (a statement may change what names mean)",
           static_cast<unsigned long long>(host_.session_id()));
  grants_.clear();
}

void ApprovalStage::on_frontend(FrontendMessage& m) {
  if (!grants_.empty() && m.verdict == Verdict::Forward) maybe_end_grants(m);
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
  const std::uint64_t policy_id = host_.core().policy->id();
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const std::int64_t now_us = std::int64_t(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
  // A JIT grant (the rule's grant_seconds) covers this session's same statement shape, judged
  // the same (rule and classes), under the same policy, until it expires.
  std::string key = grant_key(m);
  const std::int64_t now_ns = host_.core().now_ns;
  std::erase_if(grants_, [&](const Grant& g) { return g.until_ns <= now_ns; });
  for (const Grant& g : grants_) {
    if (key.empty() || g.key != key || g.policy_id != policy_id) continue;
    m.granted = true;
    m.reason = "JIT grant approved by " + g.by + ", " +
               std::to_string((g.until_ns - now_ns + 999'999'999) / 1'000'000'000) + " s left";
    PGW_INFO("session %016llx: %s runs a statement of rule %s under a %s",
             static_cast<unsigned long long>(host_.session_id()), host_.caller().identity.c_str(),
             rule.c_str(), m.reason.c_str());
    return;
  }
  Approvals::Pending p;
  p.core = host_.core().core;
  p.session = host_.session_id();
  p.identity = host_.caller().identity;
  p.actors = host_.caller().actors;
  p.principal = host_.caller().principal;
  // Approvers (and the log) see the statement masked with the caller's profile's detectors: a
  // held INSERT of card numbers does not show them.
  const std::string_view prepared =
      !m.view.query && policy_ != nullptr ? policy_->statement_text(m.view.statement) : "";
  std::string_view shown = m.view.query ? m.view.text : prepared;
  if (host_.caller().method == "mcp") {
    // A tool call: approvers see the statement first and the call's intent beside it, not
    // pgwarden's comment (a long intent there would push the statement out of what a
    // notification shows).
    const policy::CommentTags tags = policy::comment_tags(shown, true);
    p.intent = masking_ != nullptr ? std::string(masking_->for_record(tags.intent)) : tags.intent;
    p.tool = tags.tool;
    shown = policy::after_mcp_comment(shown);
  }
  p.statement = masking_ != nullptr ? std::string(masking_->for_record(shown)) : std::string(shown);
  if (!m.view.query) {
    p.statement = "(bind of prepared statement \"" + std::string(m.view.statement) + "\"" +
                  (p.statement.empty() ? ")" : ": " + p.statement + ")");
  }
  p.rule = rule;
  p.reason = d.reason;
  if (d.rule != nullptr) {
    p.approvers = host_.core().policy->approvers_of(*d.rule);
    p.required = d.rule->approvals_required;
    held_grant_s_ = key.empty() ? 0 : d.rule->grant_seconds;
  }
  held_grant_key_ = std::move(key);
  p.requested_at_us = now_us;
  const std::size_t statement_bytes = p.statement.size();
  const std::size_t approver_groups = p.approvers.size();
  id_ = approvals->request(std::move(p));
  waiting_ = true;
  since_ns_ = host_.core().now_ns;
  policy_id_ = policy_id;
  message_ =
      "pgwarden: statement held for approval under policy rule \"" + rule + "\" (" + d.reason + ")";
  m.verdict = Verdict::Hold;
  const std::string id = approval_id_text(id_);
  // The statement's text stays out of the log (its literals may be personal data masking's
  // detectors do not know): approvers read it through the API, the recording keeps it.
  PGW_WARN(
      "approval %s requested: %s wants to run a statement of %zu bytes (rule %s, %s); see it "
      "with pgwarden approvals list, decide with pgwarden approvals approve|deny %s%s",
      id.c_str(), host_.caller().identity.c_str(), statement_bytes, rule.c_str(), d.reason.c_str(),
      id.c_str(),
      approver_groups == 0 ? " (the policy names no approvers or admins: nobody can approve it)"
                           : "");
}

void ApprovalStage::on_decision(const ApprovalDecision& d) {
  if (!waiting_ || d.id != id_) return;
  std::string outcome = (d.approved ? "approved by " : "denied by ") +
                        (d.approver.empty() ? std::string("an approver") : d.approver);
  if (!d.reason.empty()) outcome += ": " + d.reason;
  finish(d.approved, outcome, d.approver);
}

void ApprovalStage::finish(bool approved, const std::string& outcome,
                           const std::string& approvers) {
  waiting_ = false;
  PGW_INFO("approval %s: %s", approval_id_text(id_).c_str(), outcome.c_str());
  const policy::Policy* pol = host_.core().policy;
  const bool stale = approved && (pol == nullptr || pol->id() != policy_id_);
  ended(approved && !stale ? &WorkerStats::approvals_approved : &WorkerStats::approvals_refused);
  if (stale) {
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
  if (approved && held_grant_s_ > 0 && !held_grant_key_.empty()) {
    if (grants_.size() >= 64) grants_.erase(grants_.begin());  // the oldest goes
    grants_.push_back(Grant{held_grant_key_, policy_id_,
                            host_.core().now_ns + held_grant_s_ * 1'000'000'000, approvers});
  }
  held_grant_key_.clear();
  held_grant_s_ = 0;
  host_.decide_held(approved, pr::sqlstate::kInsufficientPrivilege,
                    approved ? std::string() : message_ + " was " + outcome, outcome);
}

void ApprovalStage::cancel_by_client() {
  if (!waiting_) return;
  // Decided meanwhile: the decision is in the mailbox and stands.
  if (!host_.core().approvals->withdraw(id_, "canceled by the client")) return;
  waiting_ = false;
  ended(&WorkerStats::approvals_canceled);
  PGW_INFO("approval %s: canceled by the client", approval_id_text(id_).c_str());
  host_.decide_held(false, pr::sqlstate::kQueryCanceled, "canceling statement due to user request",
                    "canceled by the client");
}

void ApprovalStage::on_close() {
  if (!waiting_) return;
  waiting_ = false;
  ended(&WorkerStats::approvals_canceled);
  host_.core().approvals->withdraw(id_, "the session ended while it waited");
}

// The wait is over: how long it took, and how it ended (for /metrics).
void ApprovalStage::ended(Counter WorkerStats::*outcome) {
  WorkerStats* st = host_.core().stats;
  if (st == nullptr) return;
  ++(st->*outcome);
  st->approval_wait.observe(host_.core().now_ns - since_ns_);
}

void ApprovalStage::on_tick(std::int64_t now_ns) {
  if (!waiting_) return;
  const double limit_s = host_.core().config->approval_timeout_s;
  if (now_ns - since_ns_ <= static_cast<std::int64_t>(limit_s * 1e9)) return;
  char outcome[96];
  std::snprintf(outcome, sizeof outcome, "not decided within %g s", limit_s);
  // Decided meanwhile: the mailbox has the decision.
  if (!host_.core().approvals->withdraw(id_, outcome)) return;
  finish(false, outcome);
}

}  // namespace pgwarden::core
