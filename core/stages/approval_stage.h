// Statements the policy holds for a human (require_approval, with the admin endpoint on): the
// held message and everything the client sends after it wait until an approver decides, or
// --approval-timeout passes. One held statement at a time: a second one in the same pipeline is
// held only after the first is decided, so each is decided on its own and nothing behind a
// held statement runs before it. Without the admin endpoint such statements are refused. Lives
// on the session's core; decisions arrive through the core's mailbox.
#pragma once

#include <string>

#include "core/approvals.h"
#include "core/metrics.h"
#include "core/stages/masking_stage.h"
#include "core/stages/policy_stage.h"
#include "core/stages/stage.h"

namespace pgwarden::core {

class ApprovalStage final : public Stage {
 public:
  explicit ApprovalStage(StageHost& host) : host_(host) {}
  void on_frontend(FrontendMessage& m) override;
  // It acts on statements the policy stage judged (a decision: Query, Parse, Bind, FunctionCall),
  // and grants end on a Query's or Parse's text.
  Interest interest() const noexcept override {
    namespace fe = protocol::fe;
    return {TypeSet{fe::kQuery, fe::kParse, fe::kBind, fe::kFunctionCall}, TypeSet::all(),
            TypeSet::all(), TypeSet::all()};
  }
  void on_tick(std::int64_t now_ns) override;
  void on_close() override;
  // A decision from the admin endpoint (through the mailbox).
  void on_decision(const ApprovalDecision& d);
  // The client sent a CancelRequest: the held statement is refused (57014), as PostgreSQL
  // cancels a running one, and its approval request withdrawn.
  void cancel_by_client();
  bool waiting() const noexcept { return waiting_; }
  // Held statements are shown masked with the caller's profile (null: as they are).
  void set_masking(MaskingStage* masking) { masking_ = masking; }
  // A held Bind is shown with its prepared statement's text, which the policy stage keeps.
  void set_policy(const PolicyStage* policy) { policy_ = policy; }

 private:
  void finish(bool approved, const std::string& outcome, const std::string& approvers = {});
  // JIT grants: the key of a simple Query under a rule with grant_seconds (its rule, classes and
  // shape: numbers aside, any other constant as written), or "" when grants do not apply.
  std::string grant_key(const FrontendMessage& m) const;
  // A statement that can change what the same text means (search_path, role, RESET, DISCARD,
  // set_config...) ends this session's grants.
  void maybe_end_grants(const FrontendMessage& m);

  StageHost& host_;
  MaskingStage* masking_ = nullptr;
  const PolicyStage* policy_ = nullptr;
  bool waiting_ = false;
  std::uint64_t id_ = 0;
  std::int64_t since_ns_ = 0;
  void ended(Counter WorkerStats::*outcome);
  std::string message_;          // "statement held for approval under policy rule ..."
  std::uint64_t policy_id_ = 0;  // the policy it was held under
  std::string held_grant_key_;   // the held statement's grant key ("" when none)
  std::int64_t held_grant_s_ = 0;
  // This session's JIT grants: approved keys, under which policy, until when, approved by whom.
  struct Grant {
    std::string key;
    std::uint64_t policy_id = 0;
    std::int64_t until_ns = 0;
    std::string by;
  };
  std::vector<Grant> grants_;
};

}  // namespace pgwarden::core
