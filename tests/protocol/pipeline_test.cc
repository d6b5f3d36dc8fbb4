#include "protocol/pipeline.h"

#include <gtest/gtest.h>

#include "tests/protocol/conversation.h"
#include "tests/protocol/test_util.h"

namespace pgwarden::protocol {
namespace {

using testing::ByteString;
using testing::msg;

std::string z(std::string_view s) {
  return std::string(s) + std::string(1, '\0');
}
std::string s16(std::uint16_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}
std::string s32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xff),
          static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
}

ByteString Q(std::string_view sql) {
  return msg('Q', z(sql));
}
ByteString P(std::string_view name, std::string_view sql) {
  return msg('P', z(name) + z(sql) + s16(0));
}
ByteString B(std::string_view portal, std::string_view stmt) {
  return msg('B', z(portal) + z(stmt) + s16(0) + s16(0) + s16(0));
}
ByteString DP(std::string_view portal) {
  return msg('D', std::string("P") + z(portal));
}
ByteString DS(std::string_view stmt) {
  return msg('D', std::string("S") + z(stmt));
}
ByteString E(std::string_view portal, std::uint32_t rows = 0) {
  return msg('E', z(portal) + s32(rows));
}
ByteString S() {
  return msg('S', "");
}
ByteString RD(std::string_view column) {  // one text column
  return msg(
      'T', s16(1) + z(column) + s32(0) + s16(0) + s32(25) + s16(0xffff) + s32(0xffffffff) + s16(0));
}
ByteString Row(std::string_view v) {
  return msg('D', s16(1) + s32(static_cast<std::uint32_t>(v.size())) + std::string(v));
}
ByteString CC(std::string_view tag) {
  return msg('C', z(tag));
}
ByteString Z(char status = 'I') {
  return msg('Z', std::string(1, status));
}
ByteString Err(std::string_view severity = "ERROR") {
  return msg('E', std::string("S") + z(severity) + std::string("V") + z(severity) +
                      std::string("C") + z("42000") + std::string("M") + z("boom") +
                      std::string(1, '\0'));
}

// Drives a model with whole messages and records what it says.
struct Driver {
  PipelineModel model;
  std::vector<std::pair<std::uint64_t, RequestState>> retired;
  std::vector<std::uint64_t> answered_locally;

  Request* send(const ByteString& m, Origin origin = Origin::Client, bool prelude = false) {
    FrontendView v;
    std::string why;
    EXPECT_TRUE(read_frontend(m, v, why)) << why;
    return model.commit(v, origin, 0, prelude);
  }
  PipelineModel::Event reply(const ByteString& m) {
    auto ev = model.on_backend(static_cast<char>(m[0]), m);
    model.retire([&](const Request& r) { retired.emplace_back(r.id, r.state); },
                 [&](Request& r) { answered_locally.push_back(r.id); });
    return ev;
  }
};

TEST(PipelineModelTest, SimpleQueryRowsFollowItsRowDescription) {
  Driver d;
  Request* q = d.send(Q("SELECT name FROM t"));
  ASSERT_NE(q, nullptr);
  EXPECT_FALSE(d.model.settled());
  EXPECT_EQ(d.reply(RD("name")).request, q);
  const ResultShape shape = d.model.current_result();
  ASSERT_NE(shape.shape, nullptr);
  EXPECT_EQ(shape.row_description.size(), RD("name").size());
  EXPECT_EQ(d.reply(Row("a")).request, q);
  EXPECT_EQ(d.reply(CC("SELECT 1")).completes, false);
  EXPECT_EQ(d.model.current_result().shape, nullptr);  // between the statements of a Query
  const auto z = d.reply(Z('T'));
  EXPECT_TRUE(z.completes);
  EXPECT_EQ(d.model.tx_status(), 'T');
  EXPECT_TRUE(d.model.settled());
  ASSERT_EQ(d.retired.size(), 1u);
  EXPECT_EQ(d.retired[0].second, RequestState::Done);
}

// A stage may send its own request while a reply is being handled (masking's COMMIT after a
// wrapped COPY) or right after a client message was committed (masking's Describe): the ring
// grows, and the request the handler holds must stay where it is.
TEST(PipelineModelTest, RequestsStayPutWhenTheRingGrows) {
  Driver d;
  Request* first = d.send(Q("SELECT 1"));
  ASSERT_NE(first, nullptr);
  const std::uint64_t first_id = first->id;
  std::vector<Request*> held{first};
  for (int i = 0; i < 100; ++i) held.push_back(d.send(Q("SELECT 2")));  // grows several times
  for (std::size_t i = 0; i < held.size(); ++i) {
    EXPECT_EQ(held[i]->id, first_id + i);
    EXPECT_EQ(held[i]->kind, RequestKind::Query);
  }
  // A reply's event points at its request; an own request sent now does not move it.
  const auto ev = d.model.on_backend('C', CC("SELECT 1"));
  ASSERT_EQ(ev.request, first);
  for (int i = 0; i < 200; ++i) d.send(Q("COMMIT"), Origin::Gateway);
  EXPECT_EQ(ev.request->id, first_id);
  EXPECT_EQ(ev.request->results, 1u);
}

TEST(PipelineModelTest, EachReplyOfAPipelineBelongsToItsMessage) {
  Driver d;
  Request* p = d.send(P("", "SELECT 1"));
  Request* b = d.send(B("", ""));
  Request* desc = d.send(DP(""));
  Request* e = d.send(E(""));
  Request* s = d.send(S());
  const std::uint64_t ids[] = {p->id, b->id, desc->id, e->id, s->id};
  EXPECT_EQ(d.reply(msg('1', "")).request->id, ids[0]);
  EXPECT_EQ(d.reply(msg('2', "")).request->id, ids[1]);
  EXPECT_EQ(d.reply(RD("x")).request->id, ids[2]);
  EXPECT_NE(d.model.current_result().shape, nullptr);  // the Execute runs what was described
  EXPECT_EQ(d.reply(Row("1")).request->id, ids[3]);
  EXPECT_EQ(d.reply(CC("SELECT 1")).request->id, ids[3]);
  EXPECT_EQ(d.reply(Z()).request->id, ids[4]);
  EXPECT_EQ(d.retired.size(), 5u);
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, AnErrorSkipsTheRestOfThePipelineUpToSync) {
  Driver d;
  d.send(P("", "INSERT 1"));
  d.send(B("", ""));
  Request* e1 = d.send(E(""));
  const std::uint64_t e1_id = e1->id;
  d.send(P("", "INSERT 2"));
  d.send(B("", ""));
  d.send(E(""));
  d.send(S());
  d.reply(msg('1', ""));
  d.reply(msg('2', ""));
  const auto err = d.reply(Err());
  EXPECT_EQ(err.request->id, e1_id);
  EXPECT_TRUE(err.completes);
  // The three messages after the error were skipped; only Sync is answered.
  std::size_t skipped = 0;
  for (const auto& [id, st] : d.retired) skipped += st == RequestState::Skipped;
  EXPECT_EQ(skipped, 3u);
  EXPECT_FALSE(d.model.skipping());  // a Sync is already on its way
  EXPECT_TRUE(d.reply(Z()).completes);
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, MessagesSentAfterTheErrorArrivedAreSkippedUntilSync) {
  Driver d;
  d.send(P("", "bad"));
  d.reply(Err());
  EXPECT_TRUE(d.model.skipping());
  Request* late = d.send(Q("SELECT 1"));  // PostgreSQL ignores even a Query while skipping
  EXPECT_EQ(late->state, RequestState::Skipped);
  Request* s = d.send(S());
  EXPECT_EQ(s->state, RequestState::Queued);
  EXPECT_FALSE(d.model.skipping());
  EXPECT_TRUE(d.reply(Z()).completes);
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, ErrorsInASimpleQueryDoNotSkip) {
  Driver d;
  d.send(Q("SELECT 1/0"));
  d.send(Q("SELECT 2"));
  const auto err = d.reply(Err());
  EXPECT_FALSE(err.completes);  // ReadyForQuery ends it
  EXPECT_FALSE(d.model.skipping());
  d.reply(Z());
  d.reply(RD("x"));
  d.reply(Row("2"));
  d.reply(CC("SELECT 1"));
  d.reply(Z());
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, CopyFromStdinIsABarrierUntilTheServerAnswers) {
  Driver d;
  d.send(Q("COPY t FROM STDIN"));
  EXPECT_TRUE(d.model.input_barrier());
  d.reply(msg('G', std::string(1, '\0') + s16(0)));
  EXPECT_FALSE(d.model.input_barrier());
  EXPECT_TRUE(d.model.copy_in());
  FrontendView v;
  std::string why;
  const ByteString sync = S();
  ASSERT_TRUE(read_frontend(sync, v, why));
  EXPECT_EQ(d.model.fate(v), PipelineModel::Fate::Ignored);  // Sync inside COPY: ignored
  const ByteString drop = Q("DROP TABLE t");
  ASSERT_TRUE(read_frontend(drop, v, why));
  EXPECT_EQ(d.model.fate(v), PipelineModel::Fate::Violation);
  EXPECT_EQ(d.send(msg('d', "1\tx\n")), nullptr);
  EXPECT_EQ(d.send(msg('c', "")), nullptr);
  EXPECT_FALSE(d.model.copy_in());
  EXPECT_TRUE(d.model.input_barrier());  // the Query may hold another COPY FROM STDIN
  d.reply(CC("COPY 1"));
  d.reply(Z());
  EXPECT_FALSE(d.model.input_barrier());
  EXPECT_TRUE(d.model.settled());
}

// The words that make a statement a possible COPY FROM STDIN are found wherever they stand, in
// any case, next to any bytes (the search reads eight bytes at a time).
TEST(PipelineModelTest, CopyWordsAreFoundAtEveryOffsetAndCase) {
  const std::string fillers[] = {"", "c", "co", "cop", "xcopx", "\x80\xff", "ccccccc", "Y"};
  auto naive = [](std::string_view s, std::string_view w) {
    for (std::size_t i = 0; i + w.size() <= s.size(); ++i) {
      std::size_t k = 0;
      while (k < w.size() && (s[i + k] | 0x20) == w[k]) ++k;
      if (k == w.size()) return true;
    }
    return false;
  };
  std::uint32_t seed = 7;
  auto rnd = [&seed] { return seed = seed * 1103515245u + 12345u, (seed >> 16) & 0x7fff; };
  int checked = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string sql;
    const char* words[] = {"copy", "from", "stdin", "stdout", "t", "select"};
    const int parts = 1 + static_cast<int>(rnd() % 6);
    for (int i = 0; i < parts; ++i) {
      sql += fillers[rnd() % 8].substr(0, rnd() % 4);
      std::string w = words[rnd() % 6];
      if (rnd() % 5 == 0) w.pop_back();  // a near miss
      for (char& c : w) {
        if (rnd() % 2 == 0) c = static_cast<char>(c - 0x20);
      }
      sql += w;
      sql += std::string(rnd() % 9, static_cast<char>('a' + rnd() % 26));
    }
    const bool expected =
        naive(sql, "copy") && naive(sql, "from") && (naive(sql, "stdin") || naive(sql, "stdout"));
    Driver d;
    Request* r = d.send(Q(sql));
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->may_copy_in, expected) << sql;
    checked += expected ? 1 : 0;
  }
  EXPECT_GT(checked, 50);  // the generator does produce COPY FROM STDIN texts
}

// PostgreSQL reads COPY t FROM STDOUT from the client too (found by its regression suite).
TEST(PipelineModelTest, CopyFromStdoutIsACopyFromTheClientToo) {
  Driver d;
  d.send(Q("copy donothingbrtrig_test from stdout"));
  EXPECT_TRUE(d.model.input_barrier());
  EXPECT_EQ(d.reply(msg('G', std::string(1, '\0') + s16(0))).divergence, nullptr);
  EXPECT_TRUE(d.model.copy_in());
}

TEST(PipelineModelTest, AQueryThatIsNotCopyLiftsTheBarrierWithItsReplies) {
  Driver d;
  d.send(Q("SELECT 'copy from stdin'"));
  EXPECT_TRUE(d.model.input_barrier());
  d.reply(RD("x"));
  d.reply(Row("copy from stdin"));
  d.reply(CC("SELECT 1"));
  EXPECT_TRUE(d.model.input_barrier());
  d.reply(Z());
  EXPECT_FALSE(d.model.input_barrier());
}

TEST(PipelineModelTest, CopyFromStdinByExecute) {
  Driver d;
  d.send(P("c", "COPY t FROM STDIN"));
  d.send(B("", "c"));
  d.send(E(""));
  EXPECT_TRUE(d.model.input_barrier());
  d.reply(msg('1', ""));
  d.reply(msg('2', ""));
  d.reply(msg('G', std::string(1, '\0') + s16(0)));
  EXPECT_TRUE(d.model.copy_in());
  d.send(msg('d', "1\n"));
  d.send(msg('c', ""));
  EXPECT_FALSE(d.model.input_barrier());
  d.send(S());
  d.reply(CC("COPY 1"));
  d.reply(Z());
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, CopyOut) {
  Driver d;
  d.send(Q("COPY t TO STDOUT"));
  EXPECT_FALSE(d.model.input_barrier());
  d.reply(msg('H', std::string(1, '\1') + s16(0)));
  EXPECT_TRUE(d.model.copy_out());
  EXPECT_EQ(d.model.copy_format(), 1);
  EXPECT_EQ(d.reply(msg('d', "row")).divergence, nullptr);
  d.reply(msg('c', ""));
  EXPECT_FALSE(d.model.copy_out());
  d.reply(CC("COPY 1"));
  d.reply(Z());
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, AnExecuteRunsWhatWasDescribedOnlyRightAfterTheDescribe) {
  Driver d;
  FrontendView v;
  std::string why;
  const ByteString execute = E("p");
  ASSERT_TRUE(read_frontend(execute, v, why));
  d.send(B("p", "s"));
  EXPECT_FALSE(d.model.execute_described(v));
  d.send(DP("p"));
  EXPECT_TRUE(d.model.execute_described(v));
  d.send(E("p", 10));
  EXPECT_TRUE(d.model.execute_described(v));  // the same portal fetched again
  d.send(Q("CLOSE p; DECLARE p CURSOR FOR SELECT secret FROM t"));
  EXPECT_FALSE(d.model.execute_described(v));
  d.send(DS("s"));
  d.send(S());
  EXPECT_FALSE(d.model.execute_described(v));
}

TEST(PipelineModelTest, AnUndescribedExecuteHasNoKnownShape) {
  Driver d;
  d.send(B("", "s"));
  Request* e = d.send(E(""));
  d.send(S());
  d.reply(msg('2', ""));
  (void)e;
  EXPECT_EQ(d.reply(Row("secret")).divergence, nullptr);
  EXPECT_EQ(d.model.current_result().shape, nullptr);  // masked blind
}

TEST(PipelineModelTest, DescribeStatementTakesParameterAndRowDescriptions) {
  Driver d;
  d.send(P("s", "SELECT $1"));
  d.send(DS("s"));
  d.send(S());
  d.reply(msg('1', ""));
  EXPECT_NE(d.reply(RD("x")).divergence, nullptr);  // before its ParameterDescription
}

TEST(PipelineModelTest, DescribeStatementAnsweredInOrder) {
  Driver d;
  d.send(P("s", "SELECT $1"));
  d.send(DS("s"));
  d.send(S());
  d.reply(msg('1', ""));
  EXPECT_EQ(d.reply(msg('t', s16(1) + s32(23))).divergence, nullptr);
  EXPECT_TRUE(d.reply(msg('n', "")).completes);
  d.reply(Z());
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, RepliesItDidNotPredictAreDivergences) {
  {
    Driver d;
    EXPECT_NE(d.reply(msg('1', "")).divergence, nullptr);
  }
  {
    Driver d;
    d.send(B("", ""));
    EXPECT_NE(d.reply(msg('1', "")).divergence, nullptr);
  }
  {
    Driver d;
    d.send(Q("SELECT 1"));
    EXPECT_NE(d.reply(msg('G', std::string(1, '\0') + s16(0))).divergence, nullptr);
  }
  {
    Driver d;
    EXPECT_NE(d.reply(Err()).divergence, nullptr);  // an ERROR answering nothing
    EXPECT_EQ(d.reply(Err("FATAL")).divergence, nullptr);
    EXPECT_TRUE(d.model.on_backend('E', Err("FATAL")).fatal);
  }
  {
    Driver d;
    d.send(Q("START_REPLICATION"));
    EXPECT_NE(d.reply(msg('W', std::string(1, '\0') + s16(0))).divergence, nullptr);
  }
}

// --upstream-pooler transaction: a Bind or Describe of a named statement goes upstream behind an
// unnamed Parse of pgwarden's own. Its ParseComplete is marked for dropping; the request's own
// replies follow it.
TEST(PipelineModelTest, APreludeParseCompleteComesFirstAndIsNotTheClients) {
  Driver d;
  Request* b = d.send(B("", "s1"), Origin::Client, /*prelude=*/true);
  Request* ds = d.send(DS("s1"), Origin::Client, /*prelude=*/true);
  Request* s = d.send(S());
  ASSERT_TRUE(b->prelude);
  auto ev = d.reply(msg('1', ""));
  EXPECT_TRUE(ev.prelude);
  EXPECT_EQ(ev.request, b);
  EXPECT_FALSE(ev.completes);
  ev = d.reply(msg('2', ""));
  EXPECT_FALSE(ev.prelude);
  EXPECT_TRUE(ev.completes);
  EXPECT_TRUE(d.reply(msg('1', "")).prelude);
  EXPECT_EQ(d.reply(msg('t', s16(0))).request, ds);
  EXPECT_TRUE(d.reply(msg('n', "")).completes);
  EXPECT_EQ(d.reply(Z()).request, s);
  EXPECT_TRUE(d.model.settled());
}

// The prelude's error is the Bind's: the Bind failed, the rest up to Sync is skipped.
TEST(PipelineModelTest, APreludeErrorIsTheRequestsAndSkipsToSync) {
  Driver d;
  Request* b = d.send(B("", "s1"), Origin::Client, true);
  Request* e = d.send(E(""));
  Request* s = d.send(S());
  const std::uint64_t ids[] = {b->id, e->id, s->id};
  const auto ev = d.reply(Err());
  EXPECT_EQ(ev.request, b);
  EXPECT_TRUE(ev.completes);
  EXPECT_FALSE(ev.prelude);
  EXPECT_EQ(d.reply(Z()).request->id, ids[2]);
  ASSERT_EQ(d.retired.size(), 3u);
  EXPECT_EQ(d.retired[0].first, ids[0]);
  EXPECT_EQ(d.retired[1], std::make_pair(ids[1], RequestState::Skipped));
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, NoReplyOfTheRequestComesBeforeItsPrelude) {
  Driver d;
  d.send(B("", "s1"), Origin::Client, true);
  EXPECT_NE(d.model.on_backend('2', msg('2', "")).divergence, nullptr);
  // Skipped requests have no prelude: the server skips the Parse before them too.
  Driver k;
  k.send(B("", "missing"));
  k.reply(Err());  // the Bind failed before the client sent Sync
  Request* late = k.send(B("", "s1"), Origin::Client, true);
  EXPECT_EQ(late->state, RequestState::Skipped);
  EXPECT_FALSE(late->prelude);
}

TEST(PipelineModelTest, AsynchronousMessagesAnswerNothing) {
  Driver d;
  EXPECT_EQ(d.reply(msg('N', "SNOTICE" + std::string(2, '\0'))).request, nullptr);
  EXPECT_EQ(d.reply(msg('A', s32(1) + z("chan") + z("payload"))).divergence, nullptr);
  d.reply(msg('S', z("standard_conforming_strings") + z("off")));
  EXPECT_FALSE(d.model.standard_conforming_strings());
  d.reply(msg('S', z("client_encoding") + z("SJIS")));
  EXPECT_EQ(d.model.client_encoding(), "SJIS");
}

TEST(PipelineModelTest, LocalAnswersWaitForTheirTurnAndAreSkippedLikeTheServerWould) {
  Driver d;
  d.send(Q("SELECT 1"));
  const std::uint64_t local = d.model.commit_local(RequestKind::Query).id;
  EXPECT_TRUE(d.answered_locally.empty());
  d.reply(CC("SELECT 1"));
  EXPECT_TRUE(d.answered_locally.empty());
  d.reply(Z());
  ASSERT_EQ(d.answered_locally.size(), 1u);
  EXPECT_EQ(d.answered_locally[0], local);
  // Inside a failed pipeline a refused Query would have been ignored by the server.
  d.send(P("", "bad"));
  d.reply(Err());
  const Request& skipped = d.model.commit_local(RequestKind::Query);
  EXPECT_EQ(skipped.state, RequestState::Skipped);
}

TEST(PipelineModelTest, FunctionCall) {
  Driver d;
  d.send(msg('F', s32(1598) + s16(0) + s16(0) + s16(0)));
  EXPECT_EQ(d.reply(msg('V', s32(1) + "7")).divergence, nullptr);
  EXPECT_TRUE(d.reply(Z()).completes);
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, AnswersDueOnlyAfterSync) {
  Driver d;
  EXPECT_TRUE(d.model.answers_due());
  d.send(P("", "SELECT 1"));
  EXPECT_FALSE(d.model.answers_due());
  d.send(Q("SELECT 2"));  // may be skipped if the Parse fails
  EXPECT_FALSE(d.model.answers_due());
  d.send(S());
  EXPECT_TRUE(d.model.answers_due());
}

// Guarantee 7: names are kept as PostgreSQL keys them (63 bytes) and their number is bounded;
// portals end with their transaction.
TEST(PipelineModelTest, NamesStayBoundedWhateverTheClientSends) {
  PipelineModel model(PipelineModel::Limits{4096, 100});
  const std::string long_name(1 << 20, 'n');
  std::size_t i = 0;
  for (; i < 300; ++i) {
    const ByteString b = B(long_name + std::to_string(i), "");
    FrontendView v;
    std::string why;
    ASSERT_TRUE(read_frontend(b, v, why));
    model.commit(v);
    const ByteString p = P(std::string("s") + std::to_string(i), "SELECT 1");
    ASSERT_TRUE(read_frontend(p, v, why));
    model.commit(v);
  }
  EXPECT_LE(model.names_kept(), 101u + 100u);  // one key for all the long names, 100 statements
  // A COPY statement prepared before the overflow may no longer be known: assumed COPY.
  const ByteString copy = P("c", "COPY t FROM STDIN");
  FrontendView v;
  std::string why;
  ASSERT_TRUE(read_frontend(copy, v, why));
  model.commit(v);
  for (int k = 0; k < 200; ++k) {
    const ByteString p = P(std::string("x") + std::to_string(k), "SELECT 1");
    ASSERT_TRUE(read_frontend(p, v, why));
    model.commit(v);
  }
  const ByteString bind = B("", "c");
  ASSERT_TRUE(read_frontend(bind, v, why));
  model.commit(v);
  const ByteString exec = E("");
  ASSERT_TRUE(read_frontend(exec, v, why));
  model.commit(v);
  EXPECT_TRUE(model.input_barrier());
}

TEST(PipelineModelTest, PortalsEndWithTheirTransaction) {
  Driver d;
  d.send(P("c", "COPY t FROM STDIN"));
  d.send(B("p", "c"));
  d.send(S());
  d.reply(msg('1', ""));
  d.reply(msg('2', ""));
  d.reply(Z('I'));
  // Portal p died with the implicit transaction: an Execute of "p" now runs whatever a later
  // DECLARE made it, which cannot be COPY.
  d.send(E("p"));
  EXPECT_FALSE(d.model.input_barrier());
}

TEST(PipelineModelTest, GrowsPastItsInitialRing) {
  Driver d;
  for (int i = 0; i < 100; ++i) d.send(S());
  EXPECT_EQ(d.model.in_flight(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(d.reply(Z()).completes);
  EXPECT_TRUE(d.model.settled());
}

TEST(PipelineModelTest, RecordedConversationsReplayWithoutDivergence) {
  for (const char* name : {"psql", "pgbench"}) {
    const auto fe = testing::split_messages(testing::read_file(std::string(name) + ".fe"), true);
    const auto be = testing::split_messages(testing::read_file(std::string(name) + ".be"), false);
    const auto r = testing::replay(fe, be);
    EXPECT_TRUE(r.divergences.empty()) << name << ": " << r.divergences.front();
    EXPECT_EQ(r.malformed, 0u) << name;
    EXPECT_GT(r.requests, 10u) << name;
  }
}

}  // namespace
}  // namespace pgwarden::protocol
