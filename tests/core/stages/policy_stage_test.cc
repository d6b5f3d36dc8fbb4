#include "core/stages/policy_stage.h"

#include "core/stages/masking_stage.h"
#include "tests/core/stage_host.h"

namespace pgwarden::core {
namespace {

using namespace testing;  // NOLINT

constexpr const char* kDenyDelete =
    R"({"rules": [{"name": "r", "deny": ["delete_without_where", "drop"]}]})";

TEST(PolicyStageTest, DeniedStatementsAreRefusedAndNamedOnesStayRefusedWhenBound) {
  FakeHost host(kDenyDelete);
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("DELETE FROM t")).verdict, Verdict::Refuse);
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Forward);
  const auto p = host.frontend(chain, Parse("s", "DROP TABLE t"));
  EXPECT_EQ(p.verdict, Verdict::Refuse);
  const auto b = host.frontend(chain, Bind("", "s"));
  EXPECT_EQ(b.verdict, Verdict::Refuse);
  EXPECT_EQ(b.message, p.message);
}

// Guarantee 9: after a reload a named statement is judged again when it is bound.
TEST(PolicyStageTest, ANamedStatementIsJudgedAgainAfterAReload) {
  FakeHost host(R"({"rules": [{"name": "r", "deny": ["drop"]}]})");
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Parse("del", "DELETE FROM orders")).verdict, Verdict::Forward);
  EXPECT_EQ(host.frontend(chain, Bind("", "del")).verdict, Verdict::Forward);
  host.reload(kDenyDelete);
  const auto b = host.frontend(chain, Bind("", "del"));
  EXPECT_EQ(b.verdict, Verdict::Refuse);
  EXPECT_NE(b.message.find("delete_without_where"), std::string::npos) << b.message;
  // A statement pgwarden never saw prepared (SQL PREPARE) cannot be judged again: refused.
  EXPECT_EQ(host.frontend(chain, Bind("", "prepared_by_sql")).verdict, Verdict::Refuse);
}

// The search_path check is a query of pgwarden's own: it never goes inside an unsynced
// extended-protocol batch. There the server may be skipping to Sync after an error (it would
// discard the check, and the session would wait for its answer forever) or would run it among
// the client's messages. What needs the check is refused until a Sync ends the batch.
TEST(PolicyStageTest, TheSearchPathCheckWaitsForTheExtendedBatchToEnd) {
  for (const bool error : {true, false}) {
    FakeHost host(R"({"rules": [{"name": "r", "forbidden_tables": ["secret.*"]}]})");
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    // Describe and Close need no check: they open the batch.
    if (error) {
      EXPECT_EQ(host.frontend(chain, DescribePortal("nope")).verdict, Verdict::Forward);
      host.backend(chain, Error("34000", "portal \"nope\" does not exist"));
      ASSERT_TRUE(host.model().skipping());
    } else {
      EXPECT_EQ(host.frontend(chain, msg('C', "P" + z(""))).verdict, Verdict::Forward);
      host.backend(chain, msg('3', ""));
    }
    ASSERT_TRUE(host.model().settled());
    for (const ByteString& m : {Query("SELECT 1"), Parse("", "SELECT 1"), Bind("", "")}) {
      EXPECT_EQ(host.frontend(chain, m).verdict, Verdict::Refuse) << static_cast<char>(m[0]);
    }
    const auto checks = [&host] {
      int n = 0;
      for (const FakeHost::Sent& s : host.sent) n += s.origin == protocol::Origin::Gateway;
      return n;
    };
    EXPECT_EQ(checks(), 0);
    // (Outside the skip, the refused Query is answered by pgwarden, the first stand-in fails
    // and the server skips the rest.)
    host.retire(chain);
    if (!error) host.backend(chain, Error("34000", "portal \"standin\" does not exist"));
    host.frontend(chain, Sync());
    host.backend(chain, Ready());
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    // The check, now as a batch of its own: three SHOWs and (outside a transaction block) the
    // roles' SELECT (23 messages), ending in a Sync.
    std::vector<std::string> sent = host.own_statements();
    ASSERT_EQ(sent.size(), 4u);
    sent.pop_back();
    EXPECT_EQ(sent, (std::vector<std::string>{"SHOW search_path", "SHOW role",
                                              "SHOW session_authorization"}));
    EXPECT_EQ(checks(), 23);
    EXPECT_EQ(host.sent.back().type, 'S');
  }
}

// A check that became due under one policy but was not yet sent (it waits for what is in
// flight) is decided again under the next: a policy without a schema rule sends none.
TEST(PolicyStageTest, ACheckNotYetSentIsDecidedAgainAfterAReload) {
  constexpr const char* kPlain = R"({"rules": [{"name": "plain", "deny": ["drop"]}]})";
  FakeHost host(kPlain);
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("SELECT pg_sleep(1)")).verdict, Verdict::Forward);
  host.reload(R"({"rules": [{"name": "r", "forbidden_tables": ["secret.*"]}]})");
  EXPECT_EQ(host.frontend(chain, Query("SELECT 7")).verdict, Verdict::Defer);
  EXPECT_TRUE(policy.check_open());  // due, behind the sleep
  host.reload(kPlain);
  host.backend(chain, RowDescription({{"pg_sleep", 0, 0}}));
  host.backend(chain, DataRow({""}));
  host.backend(chain, msg('C', z("SELECT 1")));
  host.backend(chain, Ready());
  EXPECT_EQ(host.frontend(chain, Query("SELECT 7")).verdict, Verdict::Forward);
  EXPECT_FALSE(policy.check_open());
  for (const FakeHost::Sent& s : host.sent) EXPECT_NE(s.origin, protocol::Origin::Gateway);
}

// Guarantee 2: a text whose reading depends on client_encoding waits while requests that may
// change it are in flight, and is refused when they cannot be answered before it.
TEST(PolicyStageTest, NonAsciiTextsWaitOrAreRefusedWhileTheEncodingMayChange) {
  FakeHost host(kDenyDelete);
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("SET client_encoding = 'SJIS'")).verdict, Verdict::Forward);
  EXPECT_EQ(host.frontend(chain, Query("SELECT 'caf\xc3\xa9'")).verdict, Verdict::Defer);
  host.backend(chain, msg('C', z("SET")));
  host.backend(chain, msg('S', z("client_encoding") + z("SJIS")));
  host.backend(chain, Ready());
  const auto r = host.frontend(chain, Query("SELECT 'caf\xc3\xa9'"));
  EXPECT_EQ(r.verdict, Verdict::Refuse);
  EXPECT_NE(r.message.find("SJIS"), std::string::npos);
  // In an unsynced pipeline the answer cannot come before it: refused at once.
  FakeHost h2(kDenyDelete);
  PolicyStage p2(h2);
  const std::vector<Stage*> c2{&p2};
  h2.frontend(c2, Parse("", "SELECT set_config('client_encoding', 'SJIS', false)"));
  h2.frontend(c2, Bind("", ""));
  h2.frontend(c2, Execute(""));
  EXPECT_EQ(h2.frontend(c2, Parse("", "SELECT 'caf\xc3\xa9'")).verdict, Verdict::Refuse);
  // ASCII texts never wait.
  EXPECT_EQ(h2.frontend(c2, Parse("", "SELECT 1")).verdict, Verdict::Forward);
}

TEST(PolicyStageTest, FastPathCallsAreJudgedByTheFunctionTheyName) {
  FakeHost host(R"({"rules": [{"name": "r", "read_only": true}]})");
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  auto call = [](std::uint32_t oid) { return msg('F', s32(oid) + s16(0) + s16(0) + s16(0)); };
  EXPECT_EQ(host.frontend(chain, call(954)).verdict, Verdict::Forward);  // loread
  EXPECT_EQ(host.frontend(chain, call(955)).verdict, Verdict::Refuse);   // lowrite writes
  EXPECT_EQ(host.frontend(chain, call(2078)).verdict, Verdict::Refuse);  // unknown: set_config
}

// may_redefine_statements as it was first written: four case-insensitive substring searches.
bool reference_may_redefine(std::string_view sql) {
  auto contains_ci = [&](std::string_view word) {
    for (std::size_t i = 0; i + word.size() <= sql.size(); ++i) {
      std::size_t k = 0;
      while (k < word.size() && (sql[i + k] | 0x20) == word[k]) ++k;
      if (k == word.size()) return true;
    }
    return false;
  };
  return contains_ci("deallocate") || contains_ci("prepare") || contains_ci("discard") ||
         contains_ci("execute");
}

bool reference_non_ascii(std::string_view text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

std::uint64_t next_random(std::uint64_t& seed) {
  seed = seed * 6364136223846793005ull + 1442695040888963407ull;
  return seed >> 33;
}

// The one-pass search finds each word at every offset (across its 16-byte blocks and in the
// tail), in any case, inside quotes and comments as well, and nothing the four searches did not.
TEST(PolicyStageTest, RedefiningWordsAreFoundAsTheFourSubstringSearchesFoundThem) {
  for (const char* sql : {"",
                          "d",
                          "de",
                          "DEALLOCAT",
                          "deallocate",
                          "DEALLOCATE ALL",
                          "DeAlLoCaTe s1",
                          "PREPARE s AS",
                          "discard all",
                          "EXECUTE s",
                          "SELECT 1",
                          "SELECT '/*execute*/'",
                          "SELECT 1 -- prepare",
                          "SELECT \"Discard\" FROM t",
                          "ex\xc3\xa9"
                          "cute",
                          "\xc4"
                          "EALLOCATE",
                          "@ISCARD",
                          "`iscard",
                          "D\x00ISCARD",
                          "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
                          "SELECT x FROM t WHERE description = 'the deallocation is not a word'",
                          "SELECT preparedness, executed, discarded FROM t"}) {
    EXPECT_EQ(PolicyStage::may_redefine_statements(sql), reference_may_redefine(sql)) << sql;
  }
  for (const std::string_view word : {"deallocate", "prepare", "discard", "EXECUTE"}) {
    for (std::size_t before = 0; before < 40; ++before) {
      for (std::size_t after = 0; after < 20; after += 3) {
        std::string sql = std::string(before, 'e') + std::string(word) + std::string(after, 'd');
        EXPECT_TRUE(PolicyStage::may_redefine_statements(sql)) << sql;
        sql[before + word.size() - 1] = '\xe5';  // the last letter, with the high bit set
        EXPECT_EQ(PolicyStage::may_redefine_statements(sql), reference_may_redefine(sql)) << sql;
      }
    }
  }
  static constexpr std::string_view kBytes = "dDeEaAlLoOcCtTpPrRiIsSxXuU \x80\xc4\xe5@`";
  std::uint64_t seed = 7;
  for (int round = 0; round < 100000; ++round) {
    std::string sql(next_random(seed) % 64, ' ');
    for (char& c : sql) c = kBytes[next_random(seed) % kBytes.size()];
    ASSERT_EQ(PolicyStage::may_redefine_statements(sql), reference_may_redefine(sql)) << sql;
  }
}

TEST(PolicyStageTest, NonAsciiBytesAreFoundAtEveryOffset) {
  for (std::size_t len = 0; len < 72; ++len) {  // up to four 16-byte blocks and a tail
    std::string text(len, 'a');
    EXPECT_FALSE(PolicyStage::has_non_ascii(text));
    for (std::size_t at = 0; at < len; ++at) {
      for (const char c : {'\x80', '\xff', '\xc3', '\x7f'}) {
        text[at] = c;
        EXPECT_EQ(PolicyStage::has_non_ascii(text), reference_non_ascii(text)) << len << " " << at;
        text[at] = 'a';
      }
    }
  }
}

}  // namespace
}  // namespace pgwarden::core
