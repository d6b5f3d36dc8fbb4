#include "core/stages/approval_stage.h"

#include "core/stages/policy_stage.h"
#include "tests/core/stage_host.h"

namespace pgwarden::core {
namespace {

using namespace testing;  // NOLINT

constexpr const char* kHoldDrop = R"({"rules": [{"name": "r", "require_approval": ["drop"]}]})";

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
  const std::string list = registry.list_json();
  EXPECT_NE(list.find("DROP TABLE a"), std::string::npos);
  // A decision for another id does nothing; one for this id decides it.
  approvals.on_decision(ApprovalDecision{999, 42, true, "mallory"});
  EXPECT_TRUE(host.decisions.empty());
  const std::uint64_t id = std::stoull(list.substr(list.find("\"id\":") + 5));
  ASSERT_TRUE(registry.decide(id, false, "bob"));                 // what the admin endpoint does
  EXPECT_FALSE(registry.decide(id, true, "carol"));               // decided once
  approvals.on_decision(ApprovalDecision{id, 42, false, "bob"});  // what the mailbox delivers
  ASSERT_EQ(host.decisions.size(), 1u);
  EXPECT_FALSE(host.decisions[0].approved);
  EXPECT_NE(host.decisions[0].message.find("was denied by bob"), std::string::npos);
  EXPECT_FALSE(approvals.waiting());
  // An approval arriving after the deny changes nothing.
  approvals.on_decision(ApprovalDecision{id, 42, true, "carol"});
  EXPECT_EQ(host.decisions.size(), 1u);
  // The next held statement is a request of its own.
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE b")).verdict, Verdict::Hold);
  const std::string list2 = registry.list_json();
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
  const std::string list = registry.list_json();
  const std::uint64_t id = std::stoull(list.substr(list.find("\"id\":") + 5));
  host.reload(R"({"rules": [{"name": "r", "deny": ["drop"]}]})");
  ASSERT_TRUE(registry.decide(id, true, "alice"));
  approvals.on_decision(ApprovalDecision{id, 42, true, "alice"});
  ASSERT_EQ(host.decisions.size(), 1u);
  EXPECT_FALSE(host.decisions[0].approved);
  EXPECT_NE(host.decisions[0].message.find("reloaded while it waited"), std::string::npos)
      << host.decisions[0].message;
  // Under an unchanged policy an approval still runs the statement.
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE b")).verdict, Verdict::Refuse);  // now denied
  host.reload(kHoldDrop);
  EXPECT_EQ(host.frontend(chain, Query("DROP TABLE c")).verdict, Verdict::Hold);
  const std::string list2 = registry.list_json();
  const std::uint64_t id2 = std::stoull(list2.substr(list2.find("\"id\":") + 5));
  ASSERT_TRUE(registry.decide(id2, true, "alice"));
  approvals.on_decision(ApprovalDecision{id2, 42, true, "alice"});
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
  EXPECT_EQ(registry.list_json(), "[]\n");
  FakeHost bare(kHoldDrop);
  PolicyStage p2(bare);
  ApprovalStage a2(bare);
  const auto r = bare.frontend({&p2, &a2}, Query("DROP TABLE a"));
  EXPECT_EQ(r.verdict, Verdict::Refuse);
  EXPECT_NE(r.message.find("--admin-listen"), std::string::npos) << r.message;
}

}  // namespace
}  // namespace pgwarden::core
