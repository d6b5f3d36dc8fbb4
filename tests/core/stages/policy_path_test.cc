// The policy stage's search_path check under rules that forbid whole schemas ("schema.*"): what
// makes it due, what waits for it, and how its answer is read.
#include "core/stages/policy_stage.h"

#include "tests/core/stage_host.h"

namespace pgwarden::core {
namespace {

using namespace testing;  // NOLINT

// The check reads the search_path, the role and the session user with SHOW (no snapshot taken):
// "$user" in the path is the role SET ROLE chose, else the session user. An answer missing a row
// counts as a forbidden schema.
TEST(PolicyStageTest, TheCheckResolvesUserFromTheRoleElseTheSessionUser) {
  struct Case {
    const char* role;
    const char* session_user;
    std::size_t rows;  // of the three SHOWs
    bool refused;
  };
  for (const Case& c : {Case{"none", "secret", 3, true}, Case{"none", "app", 3, false},
                        Case{"secret", "app", 3, true}, Case{"app", "secret", 3, false},
                        Case{"none", "app", 2, true}}) {
    FakeHost host(R"({"rules": [{"name": "r", "forbidden_tables": ["secret.*"]}]})");
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    std::vector<std::vector<ByteString>> rows{
        {DataRow({"\"$user\", public"})}, {DataRow({c.role})}, {DataRow({c.session_user})}};
    rows.back().resize(c.rows - 2);
    const BackendMessage ready = host.answer_check(chain, rows).back();
    EXPECT_EQ(ready.verdict, c.refused ? Verdict::Fail : Verdict::Drop)
        << c.role << " " << c.session_user << " " << c.rows;
    if (c.refused && c.rows == 3) {
      EXPECT_NE(ready.message.find("\"secret\""), std::string::npos) << ready.message;
    }
  }
}

// After the check passed, a statement that may change whose schema "$user" names makes it due
// again before the next statement (found by attacker review: SET ROLE to a role named like a
// forbidden schema, or SET search_path = "$user", then unqualified names reached it unchecked).
// A Query that would run other statements after such a one, unchecked, is refused.
TEST(PolicyStageTest, WhatMovesUserInThePathMakesTheCheckDueAgain) {
  FakeHost host(R"({"rules": [{"name": "r", "forbidden_tables": ["finance.*"]}]})");
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  const auto checked = [&](const char* role) {
    return host
        .answer_check(chain,
                      {{DataRow({"\"$user\", public"})}, {DataRow({role})}, {DataRow({"app"})}})
        .back();
  };
  const auto run = [&](const char* sql) {
    SCOPED_TRACE(sql);
    const auto v = host.frontend(chain, Query(sql)).verdict;
    if (v == Verdict::Forward) {
      host.backend(chain, msg('C', z("SET")));
      host.backend(chain, Ready());
    }
    host.retire(chain);  // a refusal is answered in its turn
    return v;
  };
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
  EXPECT_EQ(checked("none").verdict, Verdict::Drop);
  EXPECT_EQ(run("SELECT 1"), Verdict::Forward);
  EXPECT_EQ(run("SELECT role FROM staff"), Verdict::Forward);  // a word, not a role change
  EXPECT_EQ(host.path_checks(), 1u);
  for (const char* mixed :
       {"SET ROLE finance; SELECT * FROM pay", "SET search_path = \"$user\"; SELECT * FROM pay",
        "SELECT set_config('role', 'finance', false), 1; SELECT * FROM pay"}) {
    EXPECT_EQ(run(mixed), Verdict::Refuse) << mixed;
  }
  EXPECT_EQ(host.path_checks(), 1u);
  std::size_t checks = 1;
  for (const char* moves : {"SET ROLE finance", "SET search_path = \"$user\", public", "RESET ALL",
                            "DISCARD ALL", "SET SESSION AUTHORIZATION app"}) {
    EXPECT_EQ(run(moves), Verdict::Forward) << moves;
    EXPECT_EQ(host.frontend(chain, Query("SELECT * FROM pay")).verdict, Verdict::Defer) << moves;
    EXPECT_EQ(host.path_checks(), ++checks) << moves;
    EXPECT_EQ(checked("app").verdict, Verdict::Drop) << moves;
  }
  // The role now names the forbidden schema: the session ends.
  EXPECT_EQ(run("SET ROLE finance"), Verdict::Forward);
  EXPECT_EQ(host.frontend(chain, Query("SELECT * FROM pay")).verdict, Verdict::Defer);
  EXPECT_EQ(checked("finance").verdict, Verdict::Fail);
}

// The same through the extended protocol: the Executes of the batch that binds such a statement
// go on; the next statement in it waits or is refused, and after the Sync the check runs.
TEST(PolicyStageTest, ABoundRoleChangeMakesTheCheckDueAtTheEndOfItsBatch) {
  FakeHost host(R"({"rules": [{"name": "r", "forbidden_tables": ["finance.*"]}]})");
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
  host.answer_check(chain, {{DataRow({"\"$user\""})}, {DataRow({"none"})}, {DataRow({"app"})}});
  EXPECT_EQ(host.frontend(chain, Parse("r", "SET ROLE finance")).verdict, Verdict::Forward);
  EXPECT_EQ(host.frontend(chain, Sync()).verdict, Verdict::Forward);
  host.backend(chain, msg('1', ""));
  host.backend(chain, Ready());
  EXPECT_EQ(host.frontend(chain, Bind("", "r")).verdict, Verdict::Forward);
  EXPECT_EQ(host.frontend(chain, Execute("")).verdict, Verdict::Forward);
  EXPECT_NE(host.frontend(chain, Parse("", "SELECT * FROM pay")).verdict, Verdict::Forward);
  EXPECT_EQ(host.path_checks(), 1u);
}

// A check answered inside a transaction block read its SET LOCAL values: it runs again once
// the block has ended, and a Query that ends the block and runs more after it is refused.
TEST(PolicyStageTest, ACheckInsideATransactionBlockRunsAgainAfterIt) {
  FakeHost host(R"({"rules": [{"name": "r", "forbidden_tables": ["finance.*"]}]})");
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  const std::vector<std::vector<ByteString>> answer{
      {DataRow({"public"})}, {DataRow({"none"})}, {DataRow({"app"})}};
  EXPECT_EQ(host.frontend(chain, Query("BEGIN")).verdict, Verdict::Defer);
  host.answer_check(chain, answer);
  EXPECT_EQ(host.frontend(chain, Query("BEGIN")).verdict, Verdict::Forward);
  host.backend(chain, msg('C', z("BEGIN")));
  host.backend(chain, Ready('T'));
  // A reload (the same rules) makes the check due again, inside the block.
  host.reload(R"({"rules": [{"name": "r", "forbidden_tables": ["finance.*"]}]})");
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
  host.answer_check(chain, answer, 'T');
  EXPECT_EQ(host.frontend(chain, Query("COMMIT; SELECT * FROM pay")).verdict, Verdict::Refuse);
  host.retire(chain);
  EXPECT_EQ(host.frontend(chain, Query("COMMIT")).verdict, Verdict::Forward);
  host.backend(chain, msg('C', z("COMMIT")));
  host.backend(chain, Ready('I'));
  EXPECT_EQ(host.frontend(chain, Query("SELECT * FROM pay")).verdict, Verdict::Defer);
  EXPECT_EQ(host.path_checks(), 3u);
}

// Found by the review of the first version (which scanned the text for words). What moves the
// path is found by its classes: escaped spellings, a path set to its default.
constexpr const char* kFinance = R"({"rules": [{"name": "r", "forbidden_tables": ["finance.*"]}]})";
const std::vector<std::vector<ByteString>> kPathPasses{
    {DataRow({"\"$user\", public"})}, {DataRow({"none"})}, {DataRow({"app"})}};

TEST(PolicyStageTest, WhatMovesThePathIsFoundByItsClassesNotItsWords) {
  FakeHost host(kFinance);
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
  host.answer_check(chain, kPathPasses);
  const auto run = [&](const char* sql) {
    const Verdict v = host.frontend(chain, Query(sql)).verdict;
    if (v == Verdict::Forward) {
      host.backend(chain, msg('C', z("SET")));
      host.backend(chain, Ready());
    }
    host.retire(chain);
    return v;
  };
  for (const char* mixed : {"SET U&\"rol\\0065\" TO finance; SELECT * FROM pay",
                            "SELECT set_config(E'\\x72ole', 'finance', false); SELECT * FROM pay",
                            "SET search_path TO DEFAULT; SELECT * FROM pay",
                            "SET search_path TO E'\\x24user'; SELECT * FROM pay"}) {
    EXPECT_EQ(run(mixed), Verdict::Refuse) << mixed;
  }
  std::size_t checks = 1;
  for (const char* moves : {"SET U&\"rol\\0065\" TO finance", "SET search_path TO DEFAULT",
                            "SET search_path TO E'\\x24user'", "RESET search_path",
                            "SELECT set_config('role', 'finance', false)"}) {
    EXPECT_EQ(run(moves), Verdict::Forward) << moves;
    EXPECT_EQ(host.frontend(chain, Query("SELECT * FROM pay")).verdict, Verdict::Defer) << moves;
    EXPECT_EQ(host.path_checks(), ++checks) << moves;
    host.answer_check(chain, kPathPasses);
  }
}

// A statement prepared before the reload that brought the rule, bound in one batch and executed
// in the next: its Execute is what moves the path.
TEST(PolicyStageTest, TheExecuteOfAPortalThatMovesThePathMakesTheCheckDue) {
  FakeHost host(R"({"rules": [{"name": "plain", "deny": ["drop"]}]})");
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Parse("r", "SET ROLE finance")).verdict, Verdict::Forward);
  host.frontend(chain, Sync());
  host.backend(chain, msg('1', ""));
  host.backend(chain, Ready());
  host.reload(kFinance);
  EXPECT_EQ(host.frontend(chain, Query("BEGIN")).verdict, Verdict::Defer);
  host.answer_check(chain, kPathPasses);
  EXPECT_EQ(host.frontend(chain, Query("BEGIN")).verdict, Verdict::Forward);
  host.backend(chain, msg('C', z("BEGIN")));
  host.backend(chain, Ready('T'));
  EXPECT_EQ(host.frontend(chain, Bind("p", "r")).verdict, Verdict::Forward);
  host.frontend(chain, Sync());
  host.backend(chain, msg('2', ""));
  host.backend(chain, Ready('T'));
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Forward);  // p not run
  host.backend(chain, msg('C', z("SELECT 1")));
  host.backend(chain, Ready('T'));
  EXPECT_EQ(host.path_checks(), 1u);
  EXPECT_EQ(host.frontend(chain, Execute("p")).verdict, Verdict::Forward);
  EXPECT_NE(host.frontend(chain, Parse("", "SELECT * FROM pay")).verdict, Verdict::Forward);
  EXPECT_EQ(host.path_checks(), 1u);
}

// A statement pgwarden does not know (prepared with SQL PREPARE, or forgotten after a PREPARE
// in a Query, found by the final read) may move the path: its portal's Execute re-arms too.
TEST(PolicyStageTest, ThePortalOfAnUnknownStatementMayMoveThePath) {
  FakeHost host(kFinance);
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
  host.answer_check(chain, kPathPasses);
  EXPECT_EQ(host.frontend(chain, Parse("r", "SET ROLE finance")).verdict, Verdict::Forward);
  EXPECT_EQ(host.frontend(chain, Sync()).verdict, Verdict::Forward);
  host.backend(chain, msg('1', ""));
  host.backend(chain, Ready());
  EXPECT_EQ(host.frontend(chain, Query("PREPARE x AS SELECT 1")).verdict, Verdict::Forward);
  host.backend(chain, msg('C', z("PREPARE")));
  host.backend(chain, Ready());
  // (r moves the path, and SQL could EXECUTE it: PREPARE makes the check due, ahead of the Bind.)
  EXPECT_EQ(host.frontend(chain, Bind("", "r")).verdict, Verdict::Defer);
  host.answer_check(chain, kPathPasses);
  EXPECT_EQ(host.frontend(chain, Bind("", "r")).verdict, Verdict::Forward);  // r forgotten
  EXPECT_EQ(host.frontend(chain, Execute("")).verdict, Verdict::Forward);
  EXPECT_NE(host.frontend(chain, Parse("", "SELECT * FROM pay")).verdict, Verdict::Forward);
}

// A DO block that changes the role runs its own statements after it: refused. A stored
// statement that moves the path (PREPARE) moves it again when it runs (EXECUTE).
TEST(PolicyStageTest, RoutinesAndStoredStatementsThatMoveThePath) {
  FakeHost host(kFinance);
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
  host.answer_check(chain, kPathPasses);
  EXPECT_EQ(host.frontend(chain, Parse("", "DO $$BEGIN SET ROLE finance; END$$")).verdict,
            Verdict::Refuse);
  FakeHost host2(kFinance);
  PolicyStage policy2(host2);
  const std::vector<Stage*> chain2{&policy2};
  EXPECT_EQ(host2.frontend(chain2, Query("SELECT 1")).verdict, Verdict::Defer);
  host2.answer_check(chain2, kPathPasses);
  EXPECT_EQ(
      host2.frontend(chain2, Parse("", "PREPARE q AS SELECT set_config('role', 'finance', false)"))
          .verdict,
      Verdict::Forward);
  EXPECT_EQ(host2.frontend(chain2, Bind("", "")).verdict, Verdict::Forward);
  EXPECT_EQ(host2.frontend(chain2, Execute("")).verdict, Verdict::Forward);
  host2.frontend(chain2, Sync());
  host2.backend(chain2, msg('1', ""));
  host2.backend(chain2, msg('2', ""));
  host2.backend(chain2, msg('C', z("PREPARE")));
  host2.backend(chain2, Ready());
  EXPECT_EQ(host2.frontend(chain2, Query("SELECT 1")).verdict, Verdict::Defer);  // (after Sync)
  host2.answer_check(chain2, kPathPasses);
  EXPECT_EQ(host2.frontend(chain2, Query("EXECUTE q")).verdict, Verdict::Forward);
  host2.backend(chain2, msg('C', z("SELECT 1")));
  host2.backend(chain2, Ready());
  EXPECT_EQ(host2.frontend(chain2, Query("SELECT * FROM pay")).verdict, Verdict::Defer);
  EXPECT_EQ(host2.path_checks(), 3u);
}

// Found by the third review: a Query that runs EXECUTE after a role change (EXECUTE plans its
// statement again under the new path), a cursor DECLAREd with a role change run by the
// protocol's Execute, portals bound before the reload that brought the rule, a rebind that
// fails upstream, more portals than are followed, and a fast-path call of set_config.
TEST(PolicyStageTest, WhatRunsAfterARoleChangeInTheSameRequestOrLaterIsFollowed) {
  const auto start = [](FakeHost& host, const std::vector<Stage*>& chain) {
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    host.answer_check(chain, kPathPasses);
  };
  {
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    start(host, chain);
    EXPECT_EQ(host.frontend(chain, Query("SET ROLE finance; EXECUTE ps")).verdict, Verdict::Refuse);
    host.retire(chain);
    // In one batch: the Execute after the one that changes the role is refused.
    for (const auto& [name, sql] : {std::pair{"s1", "SET ROLE finance"}, {"s2", "EXECUTE ps"}}) {
      EXPECT_EQ(host.frontend(chain, Parse(name, sql)).verdict, Verdict::Forward) << sql;
    }
    EXPECT_EQ(host.frontend(chain, Bind("p1", "s1")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Bind("p2", "s2")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Execute("p1")).verdict, Verdict::Forward);
    EXPECT_NE(host.frontend(chain, Execute("p2")).verdict, Verdict::Forward);
  }
  {
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    start(host, chain);
    EXPECT_EQ(host.frontend(chain, Query("DECLARE c CURSOR FOR SELECT set_config('role', "
                                         "'finance', false)"))
                  .verdict,
              Verdict::Forward);
    host.backend(chain, msg('C', z("DECLARE CURSOR")));
    host.backend(chain, Ready('T'));
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);  // checked again
    host.answer_check(chain, kPathPasses, 'T');
    EXPECT_EQ(host.frontend(chain, Execute("c")).verdict, Verdict::Forward);
    EXPECT_NE(host.frontend(chain, Parse("", "SELECT * FROM pay")).verdict, Verdict::Forward);
  }
  {
    // Bound before the reload that brought the rule; and a rebind that would fail upstream.
    FakeHost host(R"({"rules": [{"name": "plain", "deny": ["drop"]}]})");
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    EXPECT_EQ(host.frontend(chain, Query("BEGIN")).verdict, Verdict::Forward);
    host.backend(chain, msg('C', z("BEGIN")));
    host.backend(chain, Ready('T'));
    EXPECT_EQ(host.frontend(chain, Parse("r", "SET ROLE finance")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Bind("p", "r")).verdict, Verdict::Forward);
    host.frontend(chain, Sync());
    host.backend(chain, msg('1', ""));
    host.backend(chain, msg('2', ""));
    host.backend(chain, Ready('T'));
    host.reload(kFinance);
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    host.answer_check(chain, kPathPasses, 'T');
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Forward);
    host.backend(chain, msg('C', z("SELECT 1")));
    host.backend(chain, Ready('T'));
    EXPECT_EQ(host.frontend(chain, Parse("ok", "SELECT 2")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Bind("p", "ok")).verdict, Verdict::Forward);  // 42P03 upstream
    EXPECT_EQ(host.frontend(chain, Execute("p")).verdict, Verdict::Forward);
    EXPECT_NE(host.frontend(chain, Parse("", "SELECT * FROM pay")).verdict, Verdict::Forward);
  }
  {
    // More portals than are followed: then every Execute counts.
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    start(host, chain);
    EXPECT_EQ(host.frontend(chain, Query("BEGIN")).verdict, Verdict::Forward);
    host.backend(chain, msg('C', z("BEGIN")));
    host.backend(chain, Ready('T'));
    EXPECT_EQ(host.frontend(chain, Parse("r", "SET ROLE finance")).verdict, Verdict::Forward);
    for (int i = 0; i <= 64; ++i) {
      std::string portal(1, 'p');
      portal += std::to_string(i);
      EXPECT_EQ(host.frontend(chain, Bind(portal, "r")).verdict, Verdict::Forward);
    }
    host.frontend(chain, Sync());
    host.backend(chain, msg('1', ""));
    for (int i = 0; i <= 64; ++i) host.backend(chain, msg('2', ""));
    host.backend(chain, Ready('T'));
    EXPECT_EQ(host.frontend(chain, Execute("p64")).verdict, Verdict::Forward);
    EXPECT_NE(host.frontend(chain, Parse("", "SELECT * FROM pay")).verdict, Verdict::Forward);
  }
  {
    // A fast-path call by OID (2078 is set_config) under the rule: refused.
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    start(host, chain);
    EXPECT_EQ(host.frontend(chain, msg('F', s32(2078) + s16(0) + s16(0) + s16(0))).verdict,
              Verdict::Refuse);
  }
}

// Found by the fourth review: code the server runs (a view, a default, a function's SET clause)
// can make any role the session may become the role, where no statement shows it. So "$user" in
// the path counts as each such role's schema: a session that may become a role named like a
// forbidden schema (a member of it; a superuser, of any) needs a path without it. Members of
// the user that logged in count too (the fifth review: a superuser's SET SESSION AUTHORIZATION).
TEST(PolicyStageTest, UserInThePathCountsAsEveryRoleTheSessionUserMayBecome) {
  struct Case {
    const char* path;
    const char* session_user;
    std::vector<std::string> members;  // (the server compares the names: any row counts)
    bool refused;
  };
  for (const Case& c : {Case{"\"$user\", public", "app", {}, false},
                        Case{"\"$user\", public", "app", {"finance"}, true},
                        Case{"public", "app", {"finance"}, false},
                        // "$user" is this name, quoted: not the schemas x and finance
                        Case{"\"$user\", public", "x\", \"finance", {}, false}}) {
    SCOPED_TRACE(std::string(c.path) + " " + c.session_user);
    FakeHost host(
        R"({"rules": [{"name": "r", "forbidden_tables": ["finance.*", "pay", "h'r.*"]}]})");
    host.caller_.role = "app";
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    const std::vector<std::string> sent = host.own_statements();
    ASSERT_EQ(sent.size(), 4u);
    // The names of the schemas and of the user that logged in, in hex: "finance", "h'r", "app".
    for (const char* hex : {"decode('66696e616e6365', 'hex')", "decode('682772', 'hex')",
                            "pg_has_role(session_user, r.oid, 'MEMBER') OR pg_catalog.pg_has_role("
                            "pg_catalog.convert_from(pg_catalog.decode('617070', 'hex')"}) {
      EXPECT_NE(sent[3].find(hex), std::string::npos) << sent[3];
    }
    const BackendMessage ready =
        host.answer_check(chain,
                          {{DataRow({c.path})}, {DataRow({"none"})}, {DataRow({c.session_user})}},
                          'I', c.members)
            .back();
    EXPECT_EQ(ready.verdict, c.refused ? Verdict::Fail : Verdict::Drop);
    if (c.refused) {
      EXPECT_NE(ready.message.find("may become role \"finance\""), std::string::npos)
          << ready.message;
    }
  }
  // The roles' query failed: refused as unreadable.
  FakeHost host(kFinance);
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
  for (int i = 0; i < 2; ++i) host.backend(chain, msg('3', ""));
  for (const char* value : {"public", "none", "app"}) {
    for (const ByteString& m : {msg('1', ""), msg('2', ""), DataRow({value}), msg('C', z("SHOW")),
                                msg('3', ""), msg('3', "")}) {
      host.backend(chain, m);
    }
  }
  host.backend(chain, msg('1', ""));
  host.backend(chain, Error("42501", "permission denied for view pg_roles"));
  EXPECT_EQ(host.backend(chain, Ready()).verdict, Verdict::Fail);
}

// Inside a transaction block the roles are read again only when what was read may be out of
// date: after a role statement (found by the fifth review: GRANT in a block, then a view that
// switches role, then ROLLBACK), or when the policy forbids other schemas than they were read for.
TEST(PolicyStageTest, TheRolesAreReadInsideABlockOnlyWhenOutOfDate) {
  const auto in_block = [](FakeHost& host, const std::vector<Stage*>& chain) {
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    host.answer_check(chain, kPathPasses);
    EXPECT_EQ(host.frontend(chain, Query("BEGIN")).verdict, Verdict::Forward);
    host.backend(chain, msg('C', z("BEGIN")));
    host.backend(chain, Ready('T'));
  };
  const auto run = [](FakeHost& host, const std::vector<Stage*>& chain, const char* sql) {
    EXPECT_EQ(host.frontend(chain, Query(sql)).verdict, Verdict::Forward) << sql;
    host.backend(chain, msg('C', z("SET")));
    host.backend(chain, Ready('T'));
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer) << sql;
  };
  {
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    in_block(host, chain);
    run(host, chain, "SET ROLE app");
    EXPECT_EQ(host.own_statements().size(), 7u);  // three SHOWs: no snapshot taken
    EXPECT_EQ(host.answer_check(chain, kPathPasses, 'T').back().verdict, Verdict::Drop);
    run(host, chain, "GRANT finance TO app");
    EXPECT_EQ(host.own_statements().size(), 11u);  // and the roles
    EXPECT_EQ(host.answer_check(chain, kPathPasses, 'T', {"finance"}).back().verdict,
              Verdict::Fail);
  }
  {
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    in_block(host, chain);
    // A reload that forbids the same schemas: three SHOWs; one that forbids others: the roles.
    host.reload(R"({"rules": [{"name": "r", "forbidden_tables": ["finance.*", "pay"]}]})");
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    EXPECT_EQ(host.own_statements().size(), 7u);
    EXPECT_EQ(host.answer_check(chain, kPathPasses, 'T').back().verdict, Verdict::Drop);
    host.reload(R"({"rules": [{"name": "r", "forbidden_tables": ["finance.*", "ops.*"]}]})");
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    EXPECT_EQ(host.own_statements().size(), 11u);
    EXPECT_EQ(host.answer_check(chain, kPathPasses, 'T').back().verdict, Verdict::Drop);
    // A policy without the rule meanwhile (role statements then go unfollowed; the sixth
    // review): the roles are read again when it comes back.
    host.reload(R"({"rules": [{"name": "r", "deny": ["drop"]}]})");
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Forward);
    host.backend(chain, msg('C', z("SELECT 1")));
    host.backend(chain, Ready('T'));
    host.reload(R"({"rules": [{"name": "r", "forbidden_tables": ["finance.*", "ops.*"]}]})");
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    EXPECT_EQ(host.own_statements().size(), 15u);
    EXPECT_NE(host.own_statements().back().find("decode('6f7073', 'hex')"), std::string::npos);
    EXPECT_NE(host.own_statements().back().find("decode('6f7073', 'hex')"), std::string::npos);
    EXPECT_EQ(host.answer_check(chain, kPathPasses, 'T', {"ops"}).back().verdict, Verdict::Fail);
  }
}

// Found by the sixth review: a role statement parsed, then a check inside a block that read the
// roles before it ran, then its Execute: the roles are read again after it. And code stored to
// run later that sets the role or the path (a view, a default, a function's SET clause).
TEST(PolicyStageTest, StoredRoleStatementsAndStoredCodeThatMovesThePath) {
  {
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    host.answer_check(chain, kPathPasses);
    EXPECT_EQ(host.frontend(chain, Parse("g", "GRANT finance TO app")).verdict, Verdict::Forward);
    host.frontend(chain, Sync());
    host.backend(chain, msg('1', ""));
    host.backend(chain, Ready());
    for (const char* sql : {"BEGIN", "RESET ROLE"}) {
      EXPECT_EQ(host.frontend(chain, Query(sql)).verdict, Verdict::Forward) << sql;
      host.backend(chain, msg('C', z(sql)));
      host.backend(chain, Ready('T'));
    }
    // The check RESET ROLE makes due reads the roles (the GRANT was parsed), before it runs.
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    EXPECT_EQ(host.own_statements().size(), 8u);
    host.answer_check(chain, kPathPasses, 'T');
    const std::size_t before = host.own_statements().size();
    EXPECT_EQ(host.frontend(chain, Bind("", "g")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Execute("")).verdict, Verdict::Forward);
    host.frontend(chain, Sync());
    host.backend(chain, msg('2', ""));
    host.backend(chain, msg('C', z("GRANT ROLE")));
    host.backend(chain, Ready('T'));
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    EXPECT_EQ(host.own_statements().size(), before + 4);  // the roles too, inside the block
  }
  FakeHost host(kFinance);
  PolicyStage policy(host);
  const std::vector<Stage*> chain{&policy};
  EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
  host.answer_check(chain, kPathPasses);
  for (const char* stored :
       {"CREATE TEMP VIEW v AS SELECT set_config('search_path', '\"$user\", public', false)",
        "CREATE TABLE t (x text DEFAULT set_config('role', 'finance', false))",
        "CREATE RULE r AS ON INSERT TO t DO ALSO SELECT set_config('role', 'finance', false)",
        "ALTER FUNCTION f() SET role = finance"}) {
    EXPECT_EQ(host.frontend(chain, Query(stored)).verdict, Verdict::Refuse) << stored;
    host.retire(chain);
  }
  for (const char* runs : {"ALTER ROLE app SET search_path = public", "CREATE ROLE finance"}) {
    EXPECT_EQ(host.frontend(chain, Query(runs)).verdict, Verdict::Forward) << runs;
    host.backend(chain, msg('C', z("CREATE ROLE")));
    host.backend(chain, Ready());
  }
}

// Found by the fourth review: a statement prepared with the protocol's Parse runs by SQL EXECUTE
// too; a COMMIT prepared before a check inside a block ends the block's SET LOCAL values; a Parse
// or a statement's Describe resolves names under the path of the moment: it waits for the check.
TEST(PolicyStageTest, ProtocolStatementsThatMoveThePathAreFollowedEverywhereTheyRun) {
  {
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    host.answer_check(chain, kPathPasses);
    EXPECT_EQ(
        host.frontend(chain, Parse("p", "SELECT set_config('role', 'finance', false)")).verdict,
        Verdict::Forward);
    host.frontend(chain, Sync());
    host.backend(chain, msg('1', ""));
    host.backend(chain, Ready());
    EXPECT_EQ(host.frontend(chain, Query("EXECUTE p; SELECT * FROM pay")).verdict, Verdict::Refuse);
    host.retire(chain);
    EXPECT_EQ(host.frontend(chain, Query("EXECUTE p")).verdict, Verdict::Forward);
    host.backend(chain, msg('C', z("SELECT 1")));
    host.backend(chain, Ready());
    EXPECT_EQ(host.frontend(chain, Query("SELECT * FROM pay")).verdict, Verdict::Defer);
    EXPECT_EQ(host.path_checks(), 2u);
  }
  {
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    host.answer_check(chain, kPathPasses);
    EXPECT_EQ(host.frontend(chain, Parse("c", "COMMIT")).verdict, Verdict::Forward);
    host.frontend(chain, Sync());
    host.backend(chain, msg('1', ""));
    host.backend(chain, Ready());
    EXPECT_EQ(host.frontend(chain, Query("BEGIN")).verdict, Verdict::Forward);
    host.backend(chain, msg('C', z("BEGIN")));
    host.backend(chain, Ready('T'));
    EXPECT_EQ(host.frontend(chain, Query("SET ROLE finance")).verdict, Verdict::Forward);
    host.backend(chain, msg('C', z("SET")));
    host.backend(chain, Ready('T'));
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    host.answer_check(chain, kPathPasses, 'T');  // (SET LOCAL search_path = public)
    EXPECT_EQ(host.frontend(chain, Bind("", "c")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Execute("")).verdict, Verdict::Forward);
    EXPECT_NE(host.frontend(chain, Parse("", "SELECT * FROM pay")).verdict, Verdict::Forward);
  }
  {
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    // Before the first check: a Parse and a Describe wait for it.
    EXPECT_EQ(host.frontend(chain, Parse("s", "SELECT * FROM pay")).verdict, Verdict::Defer);
    EXPECT_EQ(host.path_checks(), 1u);
    EXPECT_EQ(host.frontend(chain, msg('D', "S" + z("s"))).verdict, Verdict::Defer);
    host.answer_check(chain, kPathPasses);
    EXPECT_EQ(host.frontend(chain, Parse("r", "SET ROLE finance")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Bind("", "r")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Execute("")).verdict, Verdict::Forward);
    EXPECT_NE(host.frontend(chain, Parse("s2", "SELECT * FROM pay")).verdict, Verdict::Forward);
  }
  {
    FakeHost host(kFinance);
    PolicyStage policy(host);
    const std::vector<Stage*> chain{&policy};
    EXPECT_EQ(host.frontend(chain, Query("SELECT 1")).verdict, Verdict::Defer);
    host.answer_check(chain, kPathPasses);
    EXPECT_EQ(host.frontend(chain, Parse("r", "SET ROLE finance")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Bind("", "r")).verdict, Verdict::Forward);
    EXPECT_EQ(host.frontend(chain, Execute("")).verdict, Verdict::Forward);
    EXPECT_NE(host.frontend(chain, msg('D', "S" + z("s"))).verdict, Verdict::Forward);
  }
}

}  // namespace
}  // namespace pgwarden::core
