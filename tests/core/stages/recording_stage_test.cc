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

// However many long parameters a Bind carries, its record stays readable: under the format's
// record limit, the values past the record's budget clipped with their hashes.
TEST(RecordingStageTest, ABindOfManyLongParametersStaysOneReadableRecord) {
  Recorded r;
  const std::string value(rec::kMaxValue + 7, 'v');
  std::string body = z("") + z("") + s16(0) + s16(20);
  for (int i = 0; i < 20; ++i) body += s32(static_cast<std::uint32_t>(value.size())) + value;
  body += s16(0);
  r.host.frontend(r.chain, Parse("", "SELECT $1"));
  r.host.frontend(r.chain, msg('B', body));
  ASSERT_EQ(r.sink.records.size(), 2u);
  ASSERT_EQ(r.sink.records[1].type, rec::RecordType::Bind);
  const std::string& payload = r.sink.records[1].payload;
  EXPECT_LE(payload.size(), rec::kMaxPayload);
  EXPECT_GT(payload.size(), rec::kMaxValues);
  std::string bytes(rec::kHeaderSize, '\0');
  rec::store_le<4>(bytes.data(), payload.size());
  bytes[4] = static_cast<char>(rec::RecordType::Bind);
  bytes += payload;
  std::uint32_t crc = rec::crc32c(0, bytes.data(), 5);
  crc = rec::crc32c(crc, payload.data(), payload.size());
  rec::store_le<4>(bytes.data() + 5, crc);
  rec::Record parsed;
  std::size_t size = 0;
  std::string why;
  ASSERT_EQ(rec::parse_record(bytes, parsed, size, &why), rec::ParseStatus::Ok) << why;
  std::size_t params = 0, hashes = 0;
  for (const auto& [f, v] : parsed.fields) {
    params += f == rec::Field::Param;
    hashes += f == rec::Field::TextSha256;
  }
  EXPECT_EQ(params, 20u);
  EXPECT_EQ(hashes, 20u);
}

// An Execute of the portal just bound goes into the bind's record (one record for the usual
// extended-protocol statement); one of another portal, or after another record, has its own.
TEST(RecordingStageTest, AnExecuteOfThePortalJustBoundGoesIntoItsRecord) {
  Recorded r;
  r.host.frontend(r.chain, Parse("s", "SELECT 1"));  // 1
  r.host.frontend(r.chain, Bind("", "s"));           // 2
  r.host.frontend(r.chain, Execute(""));             // 3: into 2
  r.host.frontend(r.chain, Bind("a", "s"));          // 4
  r.host.frontend(r.chain, Execute("b"));            // 5: another portal
  r.host.frontend(r.chain, Bind("", "s"));           // 6
  r.host.frontend(r.chain, Query("SELECT 2"));       // 7
  r.host.frontend(r.chain, Execute(""));             // 8: after another record
  r.host.frontend(r.chain, Sync());
  const auto& recs = r.sink.records;
  std::vector<std::string> got;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    got.push_back(std::string(rec::type_name(recs[i].type)) + ":" +
                  r.sink.field(i, rec::Field::Statement) + ":" +
                  r.sink.field(i, rec::Field::Executed));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"parse:1:<none>", "bind:2:3", "bind:4:<none>",
                                           "execute:5:<none>", "bind:6:<none>", "query:7:<none>",
                                           "execute:8:<none>"}));
  // Its outcome is the execute's.
  r.host.backend(r.chain, msg('1', ""));
  r.host.backend(r.chain, msg('2', ""));
  r.host.backend(r.chain, msg('C', z("SELECT 1")));
  EXPECT_EQ(r.outcomes(), (std::vector<std::string>{"3:SELECT 1"}));
}

// Strict recording waits for the extended record, as for one of its own; a bind record already
// durable (written out) is not extended.
TEST(RecordingStageTest, StrictModeWaitsForTheExtendedBindRecord) {
  Recorded r;
  r.sink.durability_ = Durability::Strict;
  r.host.frontend(r.chain, Parse("", "SELECT 1"));
  r.host.frontend(r.chain, Bind("", ""));
  r.host.frontend(r.chain, Execute(""));
  ASSERT_EQ(r.sink.records.size(), 2u);
  EXPECT_EQ(r.sink.field(1, rec::Field::Executed), "3");
  EXPECT_TRUE(r.host.holding);
  r.sink.sync_all();
  EXPECT_FALSE(r.host.holding);
  r.host.frontend(r.chain, Bind("", ""));
  r.sink.sync_all();
  r.host.frontend(r.chain, Execute(""));
  ASSERT_EQ(r.sink.records.size(), 4u);
  EXPECT_EQ(r.sink.records[3].type, rec::RecordType::Execute);
  EXPECT_EQ(r.sink.field(2, rec::Field::Executed), "<none>");
  EXPECT_TRUE(r.host.holding);
}

// An Execute read later than its Bind (another pass of the loop: the client waited for
// BindComplete) has its own record, with its own time.
TEST(RecordingStageTest, AnExecuteReadLaterHasItsOwnRecord) {
  Recorded r;
  r.host.frontend(r.chain, Bind("", ""));
  r.host.core().now_ns += 2'000'000'000;
  r.host.frontend(r.chain, Execute(""));
  ASSERT_EQ(r.sink.records.size(), 2u);
  EXPECT_EQ(r.sink.records[1].type, rec::RecordType::Execute);
  EXPECT_EQ(r.sink.field(0, rec::Field::Executed), "<none>");
}

// Names are clipped like values: no portal or statement name, however long, makes a record the
// readers refuse (an Execute is judged by no policy: anyone may send one).
TEST(RecordingStageTest, LongNamesKeepRecordsReadable) {
  Recorded r;
  const std::string huge(16'777'190, 'p');
  r.host.frontend(r.chain, Execute(huge));
  r.host.frontend(r.chain, Parse(huge, "SELECT 1"));
  std::string body = z(std::string(11'500'000, 'q')) + z("") + s16(0) + s16(65535);
  for (int i = 0; i < 65535; ++i) body += s32(1) + "x";
  body += s16(0);
  r.host.frontend(r.chain, msg('B', body));
  ASSERT_EQ(r.sink.records.size(), 3u);
  for (const auto& rec : r.sink.records) {
    EXPECT_LE(rec.payload.size(), rec::kMaxPayload) << rec::type_name(rec.type);
  }
  EXPECT_EQ(r.sink.field(0, rec::Field::Portal).size(), rec::kMaxValue);
  EXPECT_EQ(r.sink.field(0, rec::Field::TextSha256).size(), 64u);
}

// A fast-path function call is recorded with its arguments, as a Bind is with its parameters.
TEST(RecordingStageTest, AFastPathCallIsRecordedWithItsArguments) {
  Recorded r;
  // lo_open(16384, 0x20000): two binary arguments; then a call with a text argument and a NULL.
  r.host.frontend(r.chain, msg('F', s32(952) + s16(1) + s16(1) + s16(2) + s32(4) +
                                        std::string("\0\0\x40\0", 4) + s32(4) +
                                        std::string("\0\x02\0\0", 4) + s16(1)));
  r.host.frontend(r.chain,
                  msg('F', s32(1) + s16(0) + s16(2) + s32(3) + "abc" + s32(0xffffffff) + s16(0)));
  ASSERT_EQ(r.sink.records.size(), 2u);
  EXPECT_EQ(r.sink.field(0, rec::Field::Text), "(fast-path call of the function with OID 952)");
  EXPECT_EQ(r.sink.field(0, rec::Field::Param), "\\x00004000");
  EXPECT_EQ(r.sink.field(1, rec::Field::Param), "abc");
  EXPECT_EQ(r.sink.field(1, rec::Field::ParamNull), "");
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

// Each statement's record says its own decision, rule and classes, however often a session
// repeats or cycles through them, and after a reload renames the rule.
TEST(RecordingStageTest, EachRecordSaysItsOwnDecisionRuleAndClasses) {
  Recorded r;
  const std::vector<std::string> texts = {"SELECT 1",
                                          "BEGIN",
                                          "UPDATE t SET a = 1",
                                          "INSERT INTO t VALUES (1)",
                                          "DELETE FROM t",
                                          "COMMIT",
                                          "DROP TABLE t",
                                          "CREATE TABLE x (a int)",
                                          "TRUNCATE t",
                                          "SET work_mem = 1",
                                          "VACUUM t",
                                          "GRANT SELECT ON t TO u",
                                          "SELECT 2",
                                          "DELETE FROM t",
                                          "BEGIN",
                                          "DROP TABLE u"};
  for (const std::string rule : {"r", "renamed"}) {
    if (rule != "r") r.host.reload(R"({"rules": [{"name": "renamed", "deny": ["drop"]}]})");
    auto p =
        policy::Policy::parse(R"({"rules": [{"name": ")" + rule + R"(", "deny": ["drop"]}]})", "p");
    ASSERT_TRUE(p.ok());
    policy::PolicyEngine engine;
    for (int round = 0; round < 2; ++round) {
      for (const std::string& text : texts) {
        const std::size_t before = r.sink.records.size();
        r.host.frontend(r.chain, Query(text));
        ASSERT_EQ(r.sink.records.size(), before + 1) << text;
        const policy::Decision d = engine.judge(**p, (*p)->match("x", {}), text);
        EXPECT_EQ(r.sink.field(before, rec::Field::Decision),
                  d.action == policy::Action::Deny ? "deny" : "allow")
            << text;
        EXPECT_EQ(r.sink.field(before, rec::Field::Rule), rule) << text;
        EXPECT_EQ(r.sink.field(before, rec::Field::Classes), policy::class_names(d.classes))
            << text;
        r.host.model().retire([&](const protocol::Request& q) { r.recording.on_retired(q); },
                              [](protocol::Request&) {});
      }
    }
  }
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
