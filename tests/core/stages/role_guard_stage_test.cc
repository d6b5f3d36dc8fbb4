#include "core/stages/role_guard_stage.h"

#include "core/stages/auth_stage.h"
#include "tests/core/stage_host.h"

namespace pgwarden::core {
namespace {

using namespace testing;  // NOLINT

// Guarantee 5: role changes are found by the parser; fast-path calls only for large objects.
TEST(RoleGuardStageTest, RoleChangesEndTheSessionHoweverSpelled) {
  FakeHost host("{}");
  RoleGuardStage guard(host);
  guard.set_enabled(true);
  const std::vector<Stage*> chain{&guard};
  for (const char* sql : {"SET U&\"rol\\0065\" = 'postgres'", "SET \"ROLE\" TO postgres",
                          "DO $$ BEGIN EXECUTE 'SET ROLE ' || 'postgres'; END $$",
                          "SELECT set_config('role', 'postgres', false)"}) {
    const auto r = host.frontend(chain, Query(sql));
    EXPECT_EQ(r.verdict, Verdict::Fail) << sql;
  }
  EXPECT_EQ(host.frontend(chain, Query("SELECT current_user")).verdict, Verdict::Forward);
  auto call = [](std::uint32_t oid) { return msg('F', s32(oid) + s16(0) + s16(0) + s16(0)); };
  EXPECT_EQ(host.frontend(chain, call(2078)).verdict, Verdict::Fail);    // set_config by OID
  EXPECT_EQ(host.frontend(chain, call(952)).verdict, Verdict::Forward);  // lo_open
}

TEST(AuthStageTest, StartupParametersPassAnAllowlist) {
  EXPECT_NE(startup_param_refusal("role", "postgres", true), "");
  EXPECT_NE(startup_param_refusal("ROLE", "postgres", false), "");
  EXPECT_NE(startup_param_refusal("session_authorization", "postgres", true), "");
  EXPECT_NE(startup_param_refusal("replication", "database", true), "");
  EXPECT_EQ(startup_param_refusal("replication", "false", true), "");
  EXPECT_NE(startup_param_refusal("log_statement", "none", true), "");   // not a client's choice
  EXPECT_EQ(startup_param_refusal("log_statement", "none", false), "");  // relay: PostgreSQL's
  EXPECT_EQ(startup_param_refusal("DateStyle", "ISO", true), "");
  EXPECT_EQ(startup_param_refusal("search_path", "app", true), "");
  EXPECT_EQ(startup_param_refusal("enable_seqscan", "off", true), "");
  EXPECT_EQ(startup_param_refusal("myapp.tenant", "7", true), "");
  std::string error;
  const auto opts =
      parse_startup_options("-c search_path=a\\ b --statement-timeout=5 -cgeqo=off", error);
  ASSERT_EQ(error, "");
  ASSERT_EQ(opts.size(), 3u);
  EXPECT_EQ(opts[0], (std::pair<std::string, std::string>{"search_path", "a b"}));
  EXPECT_EQ(opts[1], (std::pair<std::string, std::string>{"statement_timeout", "5"}));
  EXPECT_EQ(opts[2], (std::pair<std::string, std::string>{"geqo", "off"}));
  EXPECT_TRUE(parse_startup_options("-c role=postgres", error).size() == 1);
  EXPECT_TRUE(parse_startup_options("-B 100", error).empty());
  EXPECT_NE(error, "");
}

}  // namespace
}  // namespace pgwarden::core
