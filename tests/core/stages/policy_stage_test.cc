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

}  // namespace
}  // namespace pgwarden::core
