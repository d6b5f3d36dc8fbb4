#include "core/stages/approval_stage.h"

#include "core/stages/policy_stage.h"
#include "tests/core/stage_host.h"

namespace pgwarden::core {
namespace {

using namespace testing;  // NOLINT

constexpr const char* kHoldDrop =
    R"({"admins": ["dba"], "rules": [{"name": "r", "require_approval": ["drop"]}]})";

const AdminCaller kBob{"bob", {"dba"}, "oidc:https://idp.test#u-bob"};
const AdminCaller kCarol{"carol", {"dba"}, "oidc:https://idp.test#u-carol"};

// The id of the first pending statement in a list.
std::uint64_t first_id(const std::string& list) {
  std::uint64_t id = 0;
  const std::size_t at = list.find("\"id\":\"");
  EXPECT_NE(at, std::string::npos) << list;
  EXPECT_TRUE(parse_approval_id(list.substr(at + 6, 16), id)) << list;
  return id;
}

// Guarantee 6: a held statement waits for its own decision; a deny stands.
TEST(ApprovalStageTest, HeldStatementsAreDecidedOneByOneAndADenyWins) {
  FakeHost host(kHoldDrop);
  Approvals registry;
  host.core().approvals = &registry;
  PolicyStage policy(host);
  ApprovalStage approvals(host);
  const std::vector<Stage*> chain{&policy, &approvals};
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE a")).verdict, Verdict::Hold);
  EXPECT_TRUE(approvals.waiting());
  const std::string list = registry.list_json(kBob, {"dba"});
  EXPECT_NE(list.find("DROP TABLE a"), std::string::npos);
  // A decision for another id does nothing; one for this id decides it.
  approvals.on_decision(ApprovalDecision{999, 42, true, "mallory", ""});
  EXPECT_TRUE(host.decisions.empty());
  const std::uint64_t id = first_id(list);
  // What the admin API does, then what the mailbox delivers.
  ASSERT_EQ(registry.decide(id, false, kBob, "not now"), Approvals::Outcome::Decided);
  EXPECT_EQ(registry.decide(id, true, kCarol, ""), Approvals::Outcome::NotFound);  // decided once
  approvals.on_decision(ApprovalDecision{id, 42, false, "bob", "not now"});
  ASSERT_EQ(host.decisions.size(), 1u);
  EXPECT_FALSE(host.decisions[0].approved);
  EXPECT_NE(host.decisions[0].message.find("was denied by bob: not now"), std::string::npos);
  EXPECT_FALSE(approvals.waiting());
  // An approval arriving after the deny changes nothing.
  approvals.on_decision(ApprovalDecision{id, 42, true, "carol", ""});
  EXPECT_EQ(host.decisions.size(), 1u);
  // The next held statement is a request of its own.
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE b")).verdict, Verdict::Hold);
  const std::string list2 = registry.list_json(kBob, {"dba"});
  EXPECT_EQ(list2.find("DROP TABLE a"), std::string::npos);
  EXPECT_NE(list2.find("DROP TABLE b"), std::string::npos);
}

// An approval means what the approver saw judged: when the policy is reloaded while a statement
// waits, an approval arriving after it refuses the statement instead of running it unjudged.
TEST(ApprovalStageTest, AnApprovalDoesNotOutliveThePolicyItWasJudgedUnder) {
  FakeHost host(kHoldDrop);
  Approvals registry;
  host.core().approvals = &registry;
  PolicyStage policy(host);
  ApprovalStage approvals(host);
  const std::vector<Stage*> chain{&policy, &approvals};
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE a")).verdict, Verdict::Hold);
  const std::string list = registry.list_json(kBob, {"dba"});
  const std::uint64_t id = first_id(list);
  host.reload(R"({"rules": [{"name": "r", "deny": ["drop"]}]})");
  ASSERT_EQ(registry.decide(id, true, kBob, ""), Approvals::Outcome::Decided);
  approvals.on_decision(ApprovalDecision{id, 42, true, "bob", ""});
  ASSERT_EQ(host.decisions.size(), 1u);
  EXPECT_FALSE(host.decisions[0].approved);
  EXPECT_NE(host.decisions[0].message.find("reloaded while it waited"), std::string::npos)
      << host.decisions[0].message;
  // Under an unchanged policy an approval still runs the statement.
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE b")).verdict, Verdict::Refuse);  // now denied
  host.reload(kHoldDrop);
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE c")).verdict, Verdict::Hold);
  const std::string list2 = registry.list_json(kBob, {"dba"});
  const std::uint64_t id2 = first_id(list2);
  ASSERT_EQ(registry.decide(id2, true, kBob, ""), Approvals::Outcome::Decided);
  approvals.on_decision(ApprovalDecision{id2, 42, true, "bob", ""});
  ASSERT_EQ(host.decisions.size(), 2u);
  EXPECT_TRUE(host.decisions[1].approved);
}

TEST(ApprovalStageTest, TimesOutAsADenyAndWithoutTheAdminEndpointRefuses) {
  FakeHost host(kHoldDrop);
  Approvals registry;
  host.core().approvals = &registry;
  host.config_.approval_timeout_s = 1;
  PolicyStage policy(host);
  ApprovalStage approvals(host);
  const std::vector<Stage*> chain{&policy, &approvals};
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE a")).verdict, Verdict::Hold);
  approvals.on_tick(host.core().now_ns + 500'000'000);
  EXPECT_TRUE(host.decisions.empty());
  approvals.on_tick(host.core().now_ns + 2'000'000'000);
  ASSERT_EQ(host.decisions.size(), 1u);
  EXPECT_NE(host.decisions[0].message.find("not decided within 1 s"), std::string::npos);
  EXPECT_EQ(registry.list_json(kBob, {"dba"}), "[]\n");
  FakeHost bare(kHoldDrop);
  PolicyStage p2(bare);
  ApprovalStage a2(bare);
  const auto r = bare.frontend({&p2, &a2}, Query("DROP TABLE a"));
  EXPECT_EQ(r.verdict, Verdict::Refuse);
  EXPECT_NE(r.message.find("--admin-listen"), std::string::npos) << r.message;
}

// Who decides: the rule's approvers (else the policy's admins), never the requester (compared
// without regard to case), and as many distinct people as the rule wants.
TEST(ApprovalStageTest, FourEyesApproversAndTwoKeyRules) {
  FakeHost host(R"({"admins": ["root"], "rules": [{"name": "r", "require_approval": ["drop"],)"
                R"( "approvers": ["dba", "sec"], "approvals_required": 2}]})");
  Approvals registry;
  host.core().approvals = &registry;
  PolicyStage policy(host);
  ApprovalStage approvals(host);
  const std::vector<Stage*> chain{&policy, &approvals};
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE a")).verdict, Verdict::Hold);
  const AdminCaller root{"root@example.com", {"root"}, ""};
  const AdminCaller self{"ALICE", {"dba"}, ""};  // the requester ("alice") in another case
  // The requester's account under another name (a token without the e-mail claim: "sub").
  const AdminCaller self_by_sub{"u-alice", {"dba"}, "oidc:https://idp.test#u-alice"};
  const AdminCaller outsider{"eve", {"analysts"}, ""};
  const AdminCaller sam{"sam", {"sec"}, ""};
  EXPECT_EQ(registry.list_json(outsider, {"root"}), "[]\n");  // nothing for them to decide
  const std::uint64_t id = first_id(registry.list_json(root, {"root"}));  // admins see all
  EXPECT_NE(registry.list_json(root, {"root"}).find("\"approvals_required\":2"), std::string::npos);
  EXPECT_EQ(registry.decide(id, true, root, ""), Approvals::Outcome::NotApprover);
  EXPECT_EQ(registry.decide(id, true, outsider, ""), Approvals::Outcome::NotApprover);
  EXPECT_EQ(registry.decide(id, true, self, ""), Approvals::Outcome::OwnStatement);
  EXPECT_EQ(registry.decide(id, false, self, ""), Approvals::Outcome::OwnStatement);
  EXPECT_EQ(registry.decide(id, true, self_by_sub, ""), Approvals::Outcome::OwnStatement);
  EXPECT_EQ(registry.decide(id, true, kBob, ""), Approvals::Outcome::Counted);
  EXPECT_EQ(registry.decide(id, true, AdminCaller{"BOB", {"dba"}, ""}, ""),
            Approvals::Outcome::AlreadyCounted);
  // Bob again through a token that names him by subject only: the same approver.
  EXPECT_EQ(registry.decide(id, true, AdminCaller{"u-bob", {"dba"}, kBob.principal}, ""),
            Approvals::Outcome::AlreadyCounted);
  EXPECT_NE(registry.list_json(sam, {}).find("\"approved_by\":[\"bob\"]"), std::string::npos);
  EXPECT_EQ(registry.decide(id, true, sam, ""), Approvals::Outcome::Decided);
  EXPECT_EQ(registry.decide(id, true, kCarol, ""), Approvals::Outcome::NotFound);
  approvals.on_decision(ApprovalDecision{id, 42, true, "bob, sam", ""});
  ASSERT_EQ(host.decisions.size(), 1u);
  EXPECT_TRUE(host.decisions[0].approved);
}

// A JIT grant lets the same caller run the same shape (constants aside) under the same rule and
// policy; another shape, a reload, or an expired grant holds again.
TEST(ApprovalStageTest, JitGrantCoversTheSameShapeOnly) {
  constexpr const char* kGrant =
      R"({"rules": [{"name": "r", "require_approval": ["delete"], "approvers": ["dba"],)"
      R"( "grant_seconds": 60}]})";
  FakeHost host(kGrant);
  Approvals registry;
  host.core().approvals = &registry;
  PolicyStage policy(host);
  ApprovalStage approvals(host);
  const std::vector<Stage*> chain{&policy, &approvals};
  EXPECT_EQ(host.frontend(chain, Query("DELETE FROM t WHERE id = 1")).verdict, Verdict::Hold);
  const std::uint64_t id = first_id(registry.list_json(kBob, {}));
  ASSERT_EQ(registry.decide(id, true, kBob, ""), Approvals::Outcome::Decided);
  approvals.on_decision(ApprovalDecision{id, 42, true, "bob", ""});
  const auto again = host.frontend(chain, Query("DELETE FROM t WHERE id = 2"));
  EXPECT_EQ(again.verdict, Verdict::Forward);
  EXPECT_TRUE(again.granted);
  EXPECT_NE(again.reason.find("JIT grant approved by bob"), std::string::npos) << again.reason;
  // Another shape (or the same with a string constant changed) is held; it is denied here.
  auto deny_held = [&] {
    const std::uint64_t held = first_id(registry.list_json(kBob, {}));
    ASSERT_EQ(registry.decide(held, false, kBob, ""), Approvals::Outcome::Decided);
    approvals.on_decision(ApprovalDecision{held, 42, false, "bob", ""});
  };
  EXPECT_EQ(host.frontend(chain, Query("DELETE FROM t WHERE id = 2 OR true")).verdict,
            Verdict::Hold);
  deny_held();
  EXPECT_EQ(host.frontend(chain, Query("DELETE FROM t WHERE name = 'a'")).verdict, Verdict::Hold);
  deny_held();
  EXPECT_TRUE(host.frontend(chain, Query("DELETE FROM t WHERE id = 3")).granted);
  // A statement that may change what names mean ends the session's grants.
  EXPECT_EQ(host.frontend(chain, Query("SET search_path = prod")).verdict, Verdict::Forward);
  EXPECT_EQ(host.frontend(chain, Query("DELETE FROM t WHERE id = 4")).verdict, Verdict::Hold);
  deny_held();
  // Another session has grants of its own (none).
  ApprovalStage other(host);
  EXPECT_EQ(host.frontend({&policy, &other}, Query("DELETE FROM t WHERE id = 5")).verdict,
            Verdict::Hold);
  other.on_close();
}

// A Bind held after a reload shows approvers the prepared statement's text, not only its name.
TEST(ApprovalStageTest, AHeldBindShowsItsStatementText) {
  FakeHost host(
      R"({"rules": [{"name": "r", "require_approval": ["drop"], "approvers": ["dba"]}]})");
  Approvals registry;
  host.core().approvals = &registry;
  PolicyStage policy(host);
  ApprovalStage approvals(host);
  approvals.set_policy(&policy);
  const std::vector<Stage*> chain{&policy, &approvals};
  EXPECT_EQ(host.frontend(chain, Parse("s1", "DELETE FROM t WHERE id = 1")).verdict,
            Verdict::Forward);
  host.reload(
      R"({"rules": [{"name": "r", "require_approval": ["delete"], "approvers": ["dba"]}]})");
  EXPECT_EQ(host.frontend(chain, Bind("", "s1")).verdict, Verdict::Hold);
  const std::string list = registry.list_json(kBob, {});
  EXPECT_NE(list.find("(bind of prepared statement \\\"s1\\\": DELETE FROM t WHERE id = 1)"),
            std::string::npos)
      << list;
  approvals.on_close();
}

TEST(ApprovalIds, AreSixteenLowerCaseHexDigits) {
  std::uint64_t id = 0;
  EXPECT_TRUE(parse_approval_id("00000000000000ff", id));
  EXPECT_EQ(id, 255u);
  EXPECT_EQ(approval_id_text(255), "00000000000000ff");
  for (const char* bad : {"", "ff", "00000000000000FF", "00000000000000fg", "000000000000000ff"}) {
    EXPECT_FALSE(parse_approval_id(bad, id)) << bad;
  }
}

}  // namespace
}  // namespace pgwarden::core
