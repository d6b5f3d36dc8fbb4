// The session's stage chains: a hook reaches only the stages whose interest has the message (or
// request kind), in chain order; and a stage lets pass nothing it acts on. Every stage test runs
// its messages through these chains (stage_host.h), so the masking, recording and policy
// guarantees are tested as the session dispatches them.
#include "core/stages/approval_stage.h"
#include "core/stages/masking_stage.h"
#include "core/stages/policy_stage.h"
#include "core/stages/recording_stage.h"
#include "tests/core/stage_host.h"

namespace pgwarden::core {
namespace {

using namespace testing;  // NOLINT

// A server message as the session hands it to a stage, answering `ev`'s request.
BackendMessage backend_message(const ByteString& whole, protocol::PipelineModel::Event& ev) {
  BackendMessage m;
  m.type = static_cast<char>(whole[0]);
  m.whole = whole;
  m.size = static_cast<std::uint32_t>(whole.size());
  m.event = &ev;
  return m;
}

// Logs each hook call as "<name><hook><type>".
class Probe final : public Stage {
 public:
  Probe(std::string& log, char name, Interest interest)
      : log_(log), name_(name), interest_(interest) {}
  void on_frontend(FrontendMessage& m) override { note('f', m.view.type); }
  void on_backend(BackendMessage& m) override { note('b', m.type); }
  void on_retired(const protocol::Request& r) override {
    note('r', static_cast<char>('0' + static_cast<int>(r.kind)));
  }
  Interest interest() const noexcept override { return interest_; }

 private:
  void note(char hook, char type) {
    log_ += name_;
    log_ += hook;
    log_ += type;
    log_ += ' ';
  }
  std::string& log_;
  char name_;
  Interest interest_;
};

TEST(StageChainTest, AHookReachesTheInterestedStagesInChainOrder) {
  std::string log;
  Interest rows;
  rows.backend = TypeSet{'D', 'Z'};
  rows.retired = TypeSet{protocol::RequestKind::Execute};
  Probe a(log, 'a', rows), b(log, 'b', Interest{}), c(log, 'c', rows);
  StageChain back, retired;
  for (Stage* s : {static_cast<Stage*>(&a), static_cast<Stage*>(&b), static_cast<Stage*>(&c)}) {
    back.add(s, s->interest().backend);
    retired.add(s, s->interest().retired);
  }
  BackendMessage m;
  const auto run = [&](char type, bool all) {
    m.type = type;
    back.each(type, all, [&m](Stage* s) { s->on_backend(m); });
  };
  run('D', false);
  run('C', false);
  run('2', false);
  EXPECT_EQ(log, "abD bbD cbD bbC bb2 ");
  log.clear();
  run('C', true);  // a reply to pgwarden's own request: every stage
  EXPECT_EQ(log, "abC bbC cbC ");
  log.clear();
  // A byte no message type uses reaches every stage, whatever their sets say.
  run('\x7f', false);
  run('\x90', false);
  EXPECT_EQ(log, "ab\x7f bb\x7f cb\x7f ab\x90 bb\x90 cb\x90 ");
  log.clear();
  protocol::Request r;
  for (const auto kind : {protocol::RequestKind::Execute, protocol::RequestKind::Sync}) {
    r.kind = kind;
    retired.each(kind, false, [&r](Stage* s) { s->on_retired(r); });
  }
  EXPECT_EQ(log, "ar5 br5 cr5 br8 ");
}

TEST(StageChainTest, EveryByteInASetReachesItsStage) {
  // Request kinds share slots with message types (and unknown bytes one slot): a chain may call a
  // stage for more than its set asks, never for less.
  for (unsigned b = 0; b < 256; ++b) {
    std::string log;
    Interest in;
    in.backend = TypeSet{static_cast<char>(b)};
    Probe p(log, 'p', in);
    StageChain chain;
    chain.add(&p, in.backend);
    int calls = 0;
    chain.each(static_cast<char>(b), false, [&calls](Stage*) { ++calls; });
    ASSERT_EQ(calls, 1) << b;
  }
}

constexpr const char* kEverything = R"({"rules": [{"name": "r", "deny": ["drop"]}],
    "masking": [{"name": "m", "columns": [{"column": "ssn", "action": "redact"}],
                 "detectors": {"email": "redact", "ssn": "redact"}}]})";

// The recording acts on no message and no request outside its interest: what it lets pass adds
// no record and changes no verdict, and the requests it lets pass carry no record of theirs.
TEST(StageInterestTest, TheRecordingActsOnNothingOutsideItsInterest) {
  FakeHost host(kEverything);
  MemorySink sink;
  MaskingStage masking(host);
  PolicyStage policy(host);
  RecordingStage recording(host, sink, masking);
  const std::vector<Stage*> chain{&policy, &masking, &recording};
  host.frontend(chain, Parse("s", "SELECT ssn FROM t WHERE id = $1"));
  host.frontend(chain, Bind("", "s"));
  const auto describe = host.frontend(chain, DescribePortal(""));
  const auto execute = host.frontend(chain, Execute(""));
  const auto sync = host.frontend(chain, Sync());
  ASSERT_NE(execute.request, nullptr);
  const std::size_t records = sink.records.size();
  ASSERT_GE(records, 2u);
  const Interest in = recording.interest();
  for (const protocol::Request* r : {describe.request, sync.request}) {
    ASSERT_NE(r, nullptr);
    EXPECT_FALSE(in.retired.has(r->kind));
    EXPECT_EQ(r->tag[0], 0u);  // nothing of the recording's to retire
    recording.on_retired(*r);
  }
  protocol::PipelineModel::Event ev;
  ev.request = execute.request;
  const std::string body = z("garbage") + z("ssn 219-09-9999");
  for (unsigned b = 0; b < 128; ++b) {
    const char type = static_cast<char>(b);
    if (!in.backend.has(type)) {
      const ByteString whole = msg(type, body);
      BackendMessage m = backend_message(whole, ev);
      recording.on_backend(m);
      EXPECT_EQ(m.verdict, Verdict::Forward) << type;
    }
    if (!in.frontend.has(type) || !in.frontend_done.has(type)) {
      protocol::FrontendView v;
      v.type = type;
      FrontendMessage m(v);
      if (!in.frontend.has(type)) recording.on_frontend(m);
      if (!in.frontend_done.has(type)) recording.on_frontend_done(m, sync.request);
      EXPECT_EQ(m.verdict, Verdict::Forward) << type;
    }
  }
  EXPECT_EQ(sink.records.size(), records);
  EXPECT_EQ(sync.request->tag[0], 0u);
}

// Masking acts on no backend message outside its interest: a value in any of them goes out as
// it is because no value can be there (they carry no row, error text or COPY data).
TEST(StageInterestTest, MaskingChangesNoMessageOutsideItsInterest) {
  FakeHost host(kEverything);
  MaskingStage masking(host);
  const std::vector<Stage*> chain{&masking};
  host.frontend(chain, Bind("", "s"));
  const auto execute = host.frontend(chain, Execute(""));
  ASSERT_NE(execute.request, nullptr);
  protocol::PipelineModel::Event ev;
  ev.request = execute.request;
  const Interest in = masking.interest();
  const std::string body = z("ssn 219-09-9999 bob@example.com");
  for (unsigned b = 0; b < 128; ++b) {
    const char type = static_cast<char>(b);
    if (in.backend.has(type)) continue;
    const ByteString whole = msg(type, body);
    BackendMessage m = backend_message(whole, ev);
    masking.on_backend(m);
    EXPECT_EQ(m.verdict, Verdict::Forward) << type;
  }
  // What carries values is in it.
  for (const char type : {'D', 'E', 'N', 'A', 'V', 'S', 'H', 'd', 'Z'}) {
    EXPECT_TRUE(in.backend.has(type)) << type;
  }
}

// Masking's and policy's frontend hooks see only what they judge, except while they gate input:
// then every message, since they may make each wait. Outside their sets, while they do not gate,
// the hooks act on nothing (no verdict, no message of their own).
TEST(StageInterestTest, MaskingAndPolicyActOnNoOtherFrontendMessageWhileTheyDoNotGate) {
  FakeHost host(kEverything);
  MaskingStage masking(host);
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy, &masking};
  (void)masking.profile();             // as the session does when it builds its chains
  EXPECT_TRUE(masking.gates_input());  // the catalog query is due
  EXPECT_TRUE(policy.gates_input());   // the search_path check is not yet settled
  host.frontend(chain, Sync());
  ASSERT_EQ(host.own_statements().size(), 1u);  // the catalog query, ahead of even a Sync
  const std::size_t own = host.own.size();
  host.answer_own(chain, {{}});
  host.backend(chain, Ready());  // the Sync's
  ASSERT_FALSE(masking.gates_input());
  ASSERT_FALSE(policy.gates_input());
  for (Stage* s : chain) {
    const Interest in = s->interest();
    EXPECT_TRUE(in.gates);
    for (unsigned b = 0; b < 128; ++b) {
      const char type = static_cast<char>(b);
      if (in.frontend.has(type)) continue;
      protocol::FrontendView v;
      v.type = type;
      v.text = "COPY t TO STDOUT";
      FrontendMessage m(v);
      s->on_frontend(m);
      EXPECT_EQ(m.verdict, Verdict::Forward) << type;
      EXPECT_EQ(m.decision, nullptr) << type;
    }
  }
  EXPECT_EQ(host.own.size(), own);
  for (const char type : {'Q', 'P', 'B', 'E', 'F'}) {
    EXPECT_TRUE(masking.interest().frontend.has(type)) << type;
  }
  for (const char type : {'Q', 'P', 'B', 'F'}) {
    EXPECT_TRUE(policy.interest().frontend.has(type)) << type;
  }
}

// While masking's own transaction block around a COPY TO is open, every client message the
// stages see waits: a Sync, Describe or Close as much as a statement. (Flush goes upstream
// without reaching a stage, before and after.)
TEST(StageInterestTest, MaskingDefersEveryMessageWhileItsCopyBlockIsOpen) {
  FakeHost host(kEverything);
  MaskingStage masking(host);
  PolicyStage policy(host);
  policy.set_masking(&masking);
  const std::vector<Stage*> chain{&policy, &masking};
  host.frontend(chain, Query("SELECT 1"));  // the catalog query goes first
  host.answer_own(chain, {{}});
  host.backend(chain, msg('C', z("SELECT 1")));
  host.backend(chain, Ready());
  ASSERT_FALSE(masking.gates_input());
  EXPECT_EQ(host.frontend(chain, Query("COPY t TO STDOUT")).verdict, Verdict::Forward);
  EXPECT_TRUE(masking.gates_input());
  for (const ByteString& m : {Sync(), DescribePortal(""), msg('C', "P" + z(""))}) {
    EXPECT_EQ(host.frontend(chain, m).verdict, Verdict::Defer) << static_cast<char>(m[0]);
  }
}

// While the search_path check a forbidden schema needs is in flight, every client message waits;
// once the path is found to reach the schema, every one is refused.
TEST(StageInterestTest, PolicyHoldsEveryMessageWhileItsSearchPathCheckIsOpen) {
  FakeHost host(R"({"rules": [{"name": "r", "forbidden_tables": ["secret.*"]}]})");
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
  ASSERT_EQ(host.path_checks(), 1u);  // the check
  EXPECT_TRUE(policy.gates_input());
  for (const ByteString& m : {Sync(), DescribePortal(""), msg('C', "P" + z(""))}) {
    EXPECT_EQ(host.frontend(chain, m).verdict, Verdict::Defer) << static_cast<char>(m[0]);
  }
  host.answer_check(chain,
                    {{DataRow({"secret, public"})}, {DataRow({"none"})}, {DataRow({"app"})}});
  EXPECT_TRUE(policy.gates_input());
  for (const ByteString& m : {Sync(), DescribePortal(""), Query("SELECT 1")}) {
    EXPECT_EQ(host.frontend(chain, m).verdict, Verdict::Fail) << static_cast<char>(m[0]);
  }
}

// pgwarden's own statement and portal are named with 128 random bits per session: no client
// can name one of its own so, here or (through a pooler upstream) in another session.
TEST(StageInterestTest, EachSessionNamesItsOwnStatementsWithRandomBitsOfItsOwn) {
  FakeHost a(kEverything), b(kEverything);
  EXPECT_EQ(a.own_name(), a.own_name());
  EXPECT_NE(a.own_name(), b.own_name());
  for (const std::string& name : {a.own_name(), b.own_name()}) {
    ASSERT_EQ(name.size(), kOwnStatementPrefix.size() + 32) << name;
    EXPECT_EQ(name.substr(0, kOwnStatementPrefix.size()), kOwnStatementPrefix);
    EXPECT_EQ(name.find_first_not_of("0123456789abcdef", kOwnStatementPrefix.size()),
              std::string::npos)
        << name;
  }
}

// Approvals act on what the policy stage decided: no other frontend message gets a decision.
TEST(StageInterestTest, ApprovalsSeeEveryMessageThePolicyDecides) {
  FakeHost host(R"({"rules": [{"name": "r", "deny": ["drop"], "require_approval": ["delete"]}]})");
  PolicyStage policy(host);
  ApprovalStage approvals(host);
  const Interest in = approvals.interest();
  for (unsigned b = 0; b < 128; ++b) {
    const char type = static_cast<char>(b);
    if (in.frontend.has(type)) continue;
    protocol::FrontendView v;
    v.type = type;
    v.text = "DELETE FROM t";
    FrontendMessage m(v);
    policy.on_frontend(m);
    EXPECT_EQ(m.decision, nullptr) << type;
  }
  for (const char type : {'Q', 'P', 'B', 'F'}) EXPECT_TRUE(in.frontend.has(type)) << type;
}

}  // namespace
}  // namespace pgwarden::core
