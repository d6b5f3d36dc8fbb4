#include "core/stages/recording_stage.h"

#include "core/stages/masking_stage.h"
#include "core/stages/policy_stage.h"
#include "tests/core/stage_host.h"

namespace pgwarden::core {
namespace {

using namespace testing;  // NOLINT
namespace rec = pgwarden::recorder;

struct Recorded {
  FakeHost host{R"({"rules": [{"name": "r", "deny": ["drop"]}]})"};
  MemorySink sink;
  MaskingStage masking{host};
  PolicyStage policy{host};
  RecordingStage recording{host, sink, masking};
  std::vector<Stage*> chain{&policy, &masking, &recording};
  // (type, statement number, tag or sqlstate) of every outcome.
  std::vector<std::string> outcomes() const {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < sink.records.size(); ++i) {
      if (sink.records[i].type != rec::RecordType::Outcome) continue;
      std::string tag = sink.field(i, rec::Field::Tag);
      if (tag == "<none>") tag = sink.field(i, rec::Field::Sqlstate);
      out.push_back(sink.field(i, rec::Field::Statement) + ":" + tag);
    }
    return out;
  }
};

// Guarantee 8: every outcome goes to the request that produced it; what the server skipped
// after an error is recorded as skipped.
TEST(RecordingStageTest, OutcomesBelongToTheirRequestsAndSkippedOnesAreRecordedSkipped) {
  Recorded r;
  r.host.frontend(r.chain, Parse("", "INSERT INTO t VALUES (1)"));    // 1
  r.host.frontend(r.chain, Bind("", ""));                             // 2
  r.host.frontend(r.chain, Execute(""));                              // 3
  r.host.frontend(r.chain, Parse("", "INSERT INTO t VALUES ('x')"));  // 4
  r.host.frontend(r.chain, Bind("", ""));                             // 5
  r.host.frontend(r.chain, Execute(""));                              // 6
  r.host.frontend(r.chain, Parse("", "SELECT 1"));                    // 7
  r.host.frontend(r.chain, Sync());
  r.host.backend(r.chain, msg('1', ""));
  r.host.backend(r.chain, msg('2', ""));
  r.host.backend(r.chain, msg('C', z("INSERT 0 1")));
  r.host.backend(r.chain, msg('1', ""));
  r.host.backend(r.chain, Error("22P02", "invalid input syntax for type integer"));  // the Bind
  r.host.backend(r.chain, Ready());
  EXPECT_EQ(r.outcomes(),
            (std::vector<std::string>{"3:INSERT 0 1", "5:22P02", "6:(skipped)", "7:(skipped)"}));
}

TEST(RecordingStageTest, RefusalsAreRecordedWithTheirOutcome) {
  Recorded r;
  r.host.frontend(r.chain, Query("DROP TABLE t"));  // refused: answered locally
  const auto& recs = r.sink.records;
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs[0].type, rec::RecordType::Refused);
  EXPECT_EQ(r.sink.field(0, rec::Field::Decision), "deny");
  r.host.model().retire([&](const protocol::Request& q) { r.recording.on_retired(q); },
                        [](protocol::Request&) {});
  EXPECT_EQ(r.outcomes(), (std::vector<std::string>{"1:42501"}));
}

TEST(RecordingStageTest, NothingGoesUnrecordedWhenRecordingFails) {
  Recorded r;
  r.sink.accepting_ = false;
  const auto q = r.host.frontend(r.chain, Query("SELECT 1"));
  EXPECT_EQ(q.verdict, Verdict::Refuse);
  EXPECT_NE(q.message.find("cannot be recorded"), std::string::npos);
  EXPECT_EQ(r.host.frontend(r.chain, Parse("", "SELECT 1")).verdict, Verdict::Refuse);
}

// An approved statement runs only with its approval recorded: with no room for the record (or
// recording failing), the approval turns into a refusal (58030).
TEST(RecordingStageTest, AnApprovalThatCannotBeRecordedIsRefused) {
  Recorded r;
  const ByteString q = Query("SELECT 1");
  protocol::FrontendView v;
  std::string why;
  ASSERT_TRUE(protocol::read_frontend(q, v, why)) << why;
  FrontendMessage ok(v);
  r.recording.on_held_approved(ok);
  EXPECT_EQ(ok.verdict, Verdict::Forward);
  for (const bool room : {false, true}) {
    r.sink.room_ = room;
    r.sink.accepting_ = room ? false : true;
    FrontendMessage m(v);
    r.recording.on_held_approved(m);
    EXPECT_EQ(m.verdict, Verdict::Refuse);
    EXPECT_EQ(m.sqlstate, "58030");
    EXPECT_NE(m.message.find("approval cannot be recorded"), std::string::npos) << m.message;
  }
}

TEST(RecordingStageTest, StrictModeHoldsUpstreamUntilDurable) {
  Recorded r;
  r.sink.durability_ = Durability::Strict;
  r.host.frontend(r.chain, Query("SELECT 1"));
  EXPECT_TRUE(r.host.holding);
  r.sink.sync_all();
  EXPECT_FALSE(r.host.holding);
}

}  // namespace
}  // namespace pgwarden::core
