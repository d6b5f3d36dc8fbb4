#include "core/stages/pooler_stage.h"

#include <map>
#include <set>

#include "core/stages/policy_stage.h"
#include "tests/core/stage_host.h"

namespace pgwarden::core {
namespace {

using namespace testing;  // NOLINT
namespace pr = pgwarden::protocol;

inline ByteString DescribeStatement(std::string_view name) {
  return msg('D', std::string("S") + z(name));
}
inline ByteString CloseStatement(std::string_view name) {
  return msg('C', std::string("S") + z(name));
}
// A fast-path FunctionCall of `oid`, no arguments, text result.
inline ByteString FunctionCall(std::int32_t oid) {
  return msg('F', s32(oid) + s16(0) + s16(0) + s16(0));
}

// PostgreSQL's side, reduced to what the stage relies on: named and unnamed statements, portals,
// skipping to Sync after an error, and a pooler in transaction mode behind it: at each Sync or
// Query outside a transaction the next batch may run on another server, which has another
// client's unnamed statement and a statement of its own under any name the test plants.
class PooledServer {
 public:
  std::set<std::string> failing;                       // texts whose Parse fails (42P01)
  std::map<std::string, std::string> planted;          // another server's named statements
  std::map<std::string, std::string> planted_portals;  // another client's WITH HOLD cursors
  int switches = 0;
  int named_parses = 0;  // named statements ever created (must stay 0)
  ByteString replies;

  void feed(pr::Bytes bytes) {
    while (!bytes.empty()) {
      const std::size_t len = 1 + pr::read_u32(bytes.data() + 1);
      pr::FrontendView v;
      std::string why;
      ASSERT_TRUE(pr::read_frontend(bytes.first(len), v, why)) << why;
      handle(v);
      bytes = bytes.subspan(len);
    }
  }

 private:
  void reply(const ByteString& m) { replies += m; }
  void error(std::string_view sqlstate) {
    reply(Error(sqlstate, "error"));
    skipping_ = true;
  }
  void next_server() {
    ++switches;
    statements_ = planted;
    statements_[""] = "SELECT another client's statement";
    portals_ = planted_portals;
  }
  void handle(const pr::FrontendView& v) {
    if (v.type == 'S') {
      skipping_ = false;
      reply(Ready());
      next_server();
      return;
    }
    if (v.type == 'Q') {
      if (skipping_) return;  // postgres.c ignores every message but Sync till Sync
      statements_.erase("");
      if (v.text == "DEALLOCATE ALL") {
        for (auto it = statements_.begin(); it != statements_.end();) {
          it = it->first.empty() ? std::next(it) : statements_.erase(it);
        }
      }
      reply(msg('C', z(v.text == "DEALLOCATE ALL" ? "DEALLOCATE ALL" : "SELECT 0")));
      reply(Ready());
      next_server();
      return;
    }
    if (skipping_) return;
    if (v.type == 'F') {
      // A fast-path call: its result and ReadyForQuery, even in the middle of an extended batch
      // (postgres.c sets send_ready_for_query after it); the unnamed statement is kept, but at
      // ReadyForQuery the pooler may give the client another server.
      reply(msg('V', s32(1) + "1"));
      reply(Ready());
      next_server();
      return;
    }
    switch (v.type) {
      case 'P':
        if (v.name.empty()) statements_.erase("");
        if (failing.count(std::string(v.text)) != 0) return error("42P01");
        if (!v.name.empty() && statements_.count(std::string(v.name)) != 0) return error("42P05");
        if (!v.name.empty()) ++named_parses;
        statements_[std::string(v.name)] = std::string(v.text);
        return reply(msg('1', ""));
      case 'B': {
        const auto it = statements_.find(std::string(v.statement));
        if (it == statements_.end()) return error("26000");
        portals_[std::string(v.name)] = it->second;
        return reply(msg('2', ""));
      }
      case 'D': {
        const auto& names = v.target == 'S' ? statements_ : portals_;
        if (names.count(std::string(v.name)) == 0)
          return error(v.target == 'S' ? "26000" : "34000");
        if (v.target == 'S') reply(msg('t', s16(0)));
        return reply(RowDescription({{"c", 0, 0}}));
      }
      case 'E': {
        const auto it = portals_.find(std::string(v.name));
        if (it == portals_.end()) return error("34000");
        reply(DataRow({it->second}));
        return reply(msg('C', z("SELECT 1")));
      }
      case 'C':
        (v.target == 'S' ? statements_ : portals_).erase(std::string(v.name));
        return reply(msg('3', ""));
      default:
        return;
    }
  }
  std::map<std::string, std::string> statements_;
  std::map<std::string, std::string> portals_;
  bool skipping_ = false;
};

// The session's part, as session_ready.cc plays it: the chain (pooler first), the rewrite of what
// goes upstream, refusals by a stand-in that fails, the model fed with every reply, prelude
// ParseCompletes dropped. What the client receives is rendered as a short string: one token per
// message, a DataRow as its value, an error as E and its SQLSTATE.
class Pooled {
 public:
  explicit Pooled(std::string_view policy = "{}") : host(policy), pooler(host), policy_(host) {}

  Verdict send(const ByteString& m) {
    sent_.push_back(m);
    pr::FrontendView v;
    std::string why;
    EXPECT_TRUE(pr::read_frontend(sent_.back(), v, why)) << why;
    FrontendMessage fm(v);
    for (Stage* s : chain_) s->on_frontend(fm);
    pr::Request* r = nullptr;
    if (fm.verdict == Verdict::Forward) {
      if (pooler.rewrite(v)) {
        upstream.append(pooler.out().data(), pooler.out().size());
        server.feed(pooler.out());
        r = host.model().commit(v, pr::Origin::Client, 0, pooler.prelude());
      } else {
        upstream += sent_.back();
        server.feed(sent_.back());
        r = host.model().commit(v);
      }
    } else if (fm.verdict == Verdict::Refuse) {
      ByteString standin;
      pr::append_execute(standin, "pgwarden refused", 0);
      upstream += standin;
      server.feed(standin);
      pr::FrontendView sv;
      sent_.push_back(standin);
      EXPECT_TRUE(pr::read_frontend(sent_.back(), sv, why));
      r = host.model().commit(sv, pr::Origin::StandIn);
      r->tag_text = std::string(fm.sqlstate) + fm.message;
    }
    for (Stage* s : chain_) s->on_frontend_done(fm, r);
    return fm.verdict;
  }
  // The server's replies so far, through the model and the stages: what the client received.
  std::string client() {
    std::string out;
    pr::Bytes b = server.replies;
    while (!b.empty()) {
      const std::size_t len = 1 + pr::read_u32(b.data() + 1);
      const pr::Bytes m = b.first(len);
      b = b.subspan(len);
      const auto ev = host.model().on_backend(static_cast<char>(m[0]), m);
      EXPECT_EQ(ev.divergence, nullptr) << ev.divergence;
      if (ev.divergence != nullptr) return out + " DIVERGED";
      if (!ev.prelude) {
        BackendMessage bm;
        bm.type = static_cast<char>(m[0]);
        bm.whole = m;
        bm.size = static_cast<std::uint32_t>(m.size());
        bm.event = &ev;
        for (Stage* s : chain_) s->on_backend(bm);
        if (!out.empty()) out += ' ';
        if (bm.type == 'E') {
          const bool standin = ev.request != nullptr && ev.request->origin == pr::Origin::StandIn;
          out += "E" + (standin ? ev.request->tag_text.substr(0, 5) : pr::read_error(m)->sqlstate);
        } else if (bm.type == 'D') {
          out += std::string(reinterpret_cast<const char*>(m.data()) + 11, m.size() - 11);
        } else {
          out += static_cast<char>(bm.type);
        }
      }
      host.model().retire(
          [&](const pr::Request& r) {
            for (Stage* s : chain_) s->on_retired(r);
          },
          [](pr::Request&) {});
    }
    server.replies.clear();
    return out;
  }
  void with_policy() { chain_.push_back(&policy_); }

  FakeHost host;
  PoolerStage pooler;
  PooledServer server;
  ByteString upstream;  // every byte sent upstream

 private:
  PolicyStage policy_;
  std::vector<Stage*> chain_{&pooler};
  std::deque<ByteString> sent_;
};

TEST(PoolerStageTest, NamedStatementsRunOnWhicheverServerTheBatchGets) {
  Pooled p;
  p.server.planted["s1"] = "SELECT another server's s1";
  for (const auto& m : {Parse("s1", "SELECT 1"), Bind("", "s1"), Execute(""), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "1 2 SELECT 1 C Z");
  // Upstream: the Parse went unnamed; the Bind right after it needed no Parse of its own.
  EXPECT_EQ(p.upstream, Parse("", "SELECT 1") + Bind("", "") + Execute("") + Sync());
  p.upstream.clear();
  for (int i = 0; i < 3; ++i) {
    for (const auto& m : {Bind("", "s1"), Execute(""), Sync()}) p.send(m);
    EXPECT_EQ(p.client(), "2 SELECT 1 C Z");  // the prelude's ParseComplete is not the client's
  }
  EXPECT_EQ(p.upstream.substr(0, Parse("", "SELECT 1").size() + Bind("", "").size()),
            Parse("", "SELECT 1") + Bind("", ""));
  EXPECT_EQ(p.server.switches, 4);
  EXPECT_EQ(p.server.named_parses, 0);
  EXPECT_TRUE(p.host.model().settled());
}

TEST(PoolerStageTest, ParameterTypesGoWithTheText) {
  Pooled p;
  const ByteString typed = msg('P', z("s1") + z("SELECT $1") + s16(1) + s32(23));
  for (const auto& m : {typed, Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "1 Z");
  p.upstream.clear();
  for (const auto& m : {Bind("", "s1"), Sync()}) p.send(m);
  EXPECT_EQ(p.upstream,
            msg('P', z("") + z("SELECT $1") + s16(1) + s32(23)) + Bind("", "") + Sync());
}

// The injected Parse fails (what it reads was dropped since): the client sees one error, in the
// Bind's place, and the rest of its batch skipped, as if the Bind had failed.
TEST(PoolerStageTest, AFailingInjectedParseIsTheBindsError) {
  Pooled p;
  for (const auto& m : {Parse("s1", "SELECT * FROM gone"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "1 Z");
  p.server.failing.insert("SELECT * FROM gone");
  for (const auto& m : {Bind("", "s1"), DescribePortal(""), Execute(""), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "E42P01 Z");
  // The name stays: once the table is back, it runs again.
  p.server.failing.clear();
  for (const auto& m : {Bind("", "s1"), Execute(""), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "2 SELECT * FROM gone C Z");
  EXPECT_TRUE(p.host.model().settled());
}

TEST(PoolerStageTest, DescribeOfANamedStatement) {
  Pooled p;
  for (const auto& m : {Parse("s1", "SELECT 1"), Sync()}) p.send(m);
  p.client();
  p.upstream.clear();
  for (const auto& m : {DescribeStatement("s1"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "t T Z");
  EXPECT_EQ(p.upstream, Parse("", "SELECT 1") + DescribeStatement("") + Sync());
  // Failing, in the Describe's place.
  p.server.failing.insert("SELECT 1");
  for (const auto& m : {DescribeStatement("s1"), Bind("", "s1"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "E42P01 Z");
}

// pgwarden's Parse took the unnamed statement: the client's own is parsed again before a Bind
// that relies on it, in the same batch and in a later one (on another server).
TEST(PoolerStageTest, TheClientsUnnamedStatementIsRestoredAfterPgwardensParse) {
  Pooled p;
  for (const auto& m : {Parse("s1", "SELECT named"), Sync()}) p.send(m);
  p.client();
  p.upstream.clear();
  for (const auto& m : {Parse("", "SELECT unnamed"), Bind("a", "s1"), Bind("b", ""), Execute("a"),
                        Execute("b"), Sync()}) {
    p.send(m);
  }
  EXPECT_EQ(p.client(), "1 2 2 SELECT named C SELECT unnamed C Z");
  EXPECT_EQ(p.upstream, Parse("", "SELECT unnamed") + Parse("", "SELECT named") + Bind("a", "") +
                            Parse("", "SELECT unnamed") + Bind("b", "") + Execute("a") +
                            Execute("b") + Sync());
  // A later batch: the server's unnamed statement is another client's; the client's runs.
  for (const auto& m : {Bind("", ""), Execute(""), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "2 SELECT unnamed C Z");
  // A simple Query drops it: a Bind of it is refused as PostgreSQL refuses it, and nothing of the
  // other client's runs.
  p.send(Query("SELECT 0"));
  EXPECT_EQ(p.client(), "C Z");
  EXPECT_EQ(p.send(Bind("", "")), Verdict::Refuse);
  for (const auto& m : {Execute(""), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "E26000 Z");
  // An unnamed Parse that failed left nothing to restore either.
  p.server.failing.insert("SELECT broken");
  for (const auto& m : {Parse("", "SELECT broken"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "E42P01 Z");
  EXPECT_EQ(p.send(Bind("", "")), Verdict::Refuse);
  EXPECT_EQ(p.server.named_parses, 0);
}

// Several batches sent at once, the first failing: its Parse created nothing, the next batch
// runs, and the failed name is unknown once the failure is known.
TEST(PoolerStageTest, PipelinedBatchesWithSeveralSyncs) {
  Pooled p;
  p.server.failing.insert("SELECT * FROM gone");
  for (const auto& m : {Parse("s1", "SELECT * FROM gone"), Bind("", "s1"), Execute(""), Sync(),
                        Parse("s2", "SELECT 2"), Bind("", "s2"), Execute(""), Sync(),
                        Bind("", "s2"), Execute(""), Sync()}) {
    EXPECT_EQ(p.send(m), Verdict::Forward);
  }
  EXPECT_EQ(p.client(), "E42P01 Z 1 2 SELECT 2 C Z 2 SELECT 2 C Z");
  EXPECT_EQ(p.pooler.statements_kept(), 1u);
  EXPECT_EQ(p.send(Bind("", "s1")), Verdict::Refuse);
  p.send(Sync());
  EXPECT_EQ(p.client(), "E26000 Z");
  // And it may be prepared again.
  for (const auto& m : {Parse("s1", "SELECT 1"), Sync()}) EXPECT_EQ(p.send(m), Verdict::Forward);
  EXPECT_EQ(p.client(), "1 Z");
}

TEST(PoolerStageTest, CloseForgetsTheNameAndIsAnsweredByTheServer) {
  Pooled p;
  for (const auto& m : {Parse("s1", "SELECT 1"), Sync()}) p.send(m);
  p.client();
  p.upstream.clear();
  for (const auto& m : {CloseStatement("s1"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "3 Z");
  const std::string s1 = z("s1");  // nothing by that name went upstream
  EXPECT_EQ(p.upstream.find(ByteString(reinterpret_cast<const std::byte*>(s1.data()), s1.size())),
            ByteString::npos);
  EXPECT_EQ(p.pooler.statements_kept(), 0u);
  EXPECT_EQ(p.pooler.bytes_kept(), 0u);
  EXPECT_EQ(p.send(Bind("", "s1")), Verdict::Refuse);
  p.send(Sync());
  EXPECT_EQ(p.client(), "E26000 Z");
  for (const auto& m : {Parse("s1", "SELECT 2"), Bind("", "s1"), Execute(""), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "1 2 SELECT 2 C Z");
}

// What the server would refuse, and names never prepared (another server's under that name).
TEST(PoolerStageTest, ADuplicateOrUnknownNameIsRefusedAsPostgresRefusesIt) {
  Pooled p;
  p.server.planted["other"] = "SELECT another server's statement";
  for (const auto& m : {Parse("s1", "SELECT 1"), Sync()}) p.send(m);
  p.client();
  EXPECT_EQ(p.send(Parse("s1", "SELECT 2")), Verdict::Refuse);
  p.send(Sync());
  EXPECT_EQ(p.client(), "E42P05 Z");
  EXPECT_EQ(p.send(DescribeStatement("other")), Verdict::Refuse);
  p.send(Sync());
  EXPECT_EQ(p.client(), "E26000 Z");
  for (const auto& m : {Bind("", "s1"), Execute(""), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "2 SELECT 1 C Z");  // the first text, as judged
}

// A Parse of a name whose first Parse, in an earlier batch, is not answered yet waits for the
// answer: if the first failed, the name is free again.
TEST(PoolerStageTest, ARepeatedNameWaitsForTheFirstParsesOutcome) {
  Pooled p;
  p.server.failing.insert("SELECT * FROM gone");
  for (const auto& m : {Parse("s1", "SELECT * FROM gone"), Sync()}) p.send(m);
  EXPECT_EQ(p.send(Parse("s1", "SELECT 1")), Verdict::Defer);
  EXPECT_EQ(p.client(), "E42P01 Z");
  EXPECT_EQ(p.send(Parse("s1", "SELECT 1")), Verdict::Forward);
  p.send(Sync());
  EXPECT_EQ(p.client(), "1 Z");
  // Answered: a name in use is refused at once, also in the batch that made it.
  EXPECT_EQ(p.send(Parse("s1", "SELECT 2")), Verdict::Refuse);
  for (const auto& m : {Parse("s2", "SELECT 2"), Sync()}) p.send(m);
  EXPECT_EQ(p.send(Parse("s2", "SELECT 3")), Verdict::Defer);
  Pooled q;
  for (const auto& m : {Parse("s1", "SELECT 1"), Parse("s1", "SELECT 2")}) q.send(m);
  q.send(Sync());
  EXPECT_EQ(q.client(), "1 E42P05 Z");
}

TEST(PoolerStageTest, KeptTextsAreBounded) {
  Pooled p;
  const std::string big(PoolerStage::kMaxBytes / 2, 'x');
  EXPECT_EQ(p.send(Parse("a", "SELECT '" + big + "'")), Verdict::Forward);
  EXPECT_EQ(p.send(Parse("b", "SELECT '" + big + "'")), Verdict::Refuse);
  p.send(Sync());
  EXPECT_EQ(p.client(), "1 E54000 Z");
  EXPECT_EQ(p.pooler.statements_kept(), 1u);
  for (const auto& m : {CloseStatement("a"), Parse("b", "SELECT '" + big + "'"), Sync()}) {
    EXPECT_EQ(p.send(m), Verdict::Forward);
  }
  EXPECT_EQ(p.client(), "3 1 Z");
}

TEST(PoolerStageTest, DeallocateAllForgetsTheNamesMadeBeforeIt) {
  Pooled p;
  for (const auto& m : {Parse("s1", "SELECT 1"), Sync()}) p.send(m);
  p.send(Query("DEALLOCATE ALL"));
  for (const auto& m : {Parse("s2", "SELECT 2"), Sync()}) p.send(m);  // pipelined behind it
  EXPECT_EQ(p.client(), "1 Z C Z 1 Z");
  EXPECT_EQ(p.pooler.statements_kept(), 1u);
  for (const auto& m : {Parse("s1", "SELECT 3"), Bind("", "s2"), Execute(""), Sync()}) {
    EXPECT_EQ(p.send(m), Verdict::Forward);
  }
  EXPECT_EQ(p.client(), "1 2 SELECT 2 C Z");
}

// The policy judges the client's named view: a refused Parse keeps nothing, and its Binds are
// refused; an allowed one runs only the text judged.
TEST(PoolerStageTest, ThePolicySeesTheClientsNames) {
  Pooled p(R"({"rules": [{"name": "r", "deny": ["drop"]}]})");
  p.with_policy();
  EXPECT_EQ(p.send(Parse("d", "DROP TABLE t")), Verdict::Refuse);
  p.send(Sync());
  EXPECT_EQ(p.client(), "E42501 Z");
  EXPECT_EQ(p.send(Bind("", "d")), Verdict::Refuse);
  p.send(Sync());
  EXPECT_EQ(p.client(), "E26000 Z");
  for (const auto& m : {Parse("s", "SELECT 1"), Sync(), Bind("", "s"), Execute(""), Sync()}) {
    EXPECT_EQ(p.send(m), Verdict::Forward);
  }
  EXPECT_EQ(p.client(), "1 Z 2 SELECT 1 C Z");
  EXPECT_EQ(p.server.named_parses, 0);
}

// ATTACK: a FunctionCall ends with ReadyForQuery, like a Query, so the pooler may hand the rest of
// the batch another server; the stage still believes the server's unnamed statement is the
// client's (or pgwarden's Parse of a name), so the Bind runs another client's unnamed statement.
TEST(PoolerStageTest, AFunctionCallMidBatchLetsTheServerChange) {
  Pooled p;
  for (const auto& m :
       {Parse("", "SELECT mine"), FunctionCall(1), Bind("", ""), Execute(""), Sync()}) {
    EXPECT_EQ(p.send(m), Verdict::Forward);
  }
  EXPECT_EQ(p.client(), "1 V Z 2 SELECT mine C Z");
  for (const auto& m :
       {Parse("s1", "SELECT named"), FunctionCall(1), Bind("", "s1"), Execute(""), Sync()}) {
    EXPECT_EQ(p.send(m), Verdict::Forward);
  }
  EXPECT_EQ(p.client(), "1 V Z 2 SELECT named C Z");
}

// ATTACK: the client's Close of its unnamed statement also drops what pgwarden's Parse of a name
// put there; the stage still thinks it holds the name and sends the Bind without its prelude.
TEST(PoolerStageTest, ClosingTheUnnamedStatementDropsPgwardensParseToo) {
  Pooled p;
  for (const auto& m :
       {Parse("s1", "SELECT 1"), CloseStatement(""), Bind("", "s1"), Execute(""), Sync()}) {
    EXPECT_EQ(p.send(m), Verdict::Forward);
  }
  EXPECT_EQ(p.client(), "1 3 2 SELECT 1 C Z");  // PostgreSQL: s1 is untouched by Close('')
}

// ATTACK: a WITH HOLD cursor another client left on a pooled server is a portal that outlives its
// transaction; Execute (or Describe, or Close) of it by name in a later batch reads (or drops)
// the other client's rows. PostgreSQL would give this client 34000: its own portals ended with
// its transaction, and it opened none by that name.
TEST(PoolerStageTest, AnotherClientsHoldableCursorIsNotThisClientsPortal) {
  Pooled p;
  p.server.planted_portals["c"] = "another client's row";
  for (const auto& m : {Parse("", "SELECT 1"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "1 Z");
  for (const auto& m : {Execute("c"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "E34000 Z");
}

// A portal the client binds is its own for the transaction; once out of it (ReadyForQuery 'I') the
// next batch may run on another server, and the name is refused, not sent on.
TEST(PoolerStageTest, NamedPortalsLastTheTransactionOnly) {
  Pooled p;
  for (const auto& m : {Parse("", "SELECT 1"), Bind("p1", ""), Execute("p1"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "1 2 SELECT 1 C Z");
  EXPECT_EQ(p.send(Execute("p1")), Verdict::Refuse);
  p.send(Sync());
  EXPECT_EQ(p.client(), "E34000 Z");
}

// ATTACK: a simple Query that the server skips (an error earlier in its batch: PostgreSQL ignores
// everything up to Sync) does not drop the unnamed statement, but the stage forgets the client's.
TEST(PoolerStageTest, ASkippedQueryKeepsTheUnnamedStatement) {
  Pooled p;
  for (const auto& m : {Parse("", "SELECT mine"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "1 Z");
  for (const auto& m : {Execute("no such portal"), Query("SELECT 0"), Sync()}) p.send(m);
  EXPECT_EQ(p.client(), "E34000 Z");
  for (const auto& m : {Bind("", ""), Execute(""), Sync()}) {
    EXPECT_EQ(p.send(m), Verdict::Forward);
  }
  EXPECT_EQ(p.client(), "2 SELECT mine C Z");
}

}  // namespace
}  // namespace pgwarden::core
