// Forbidden whole schemas ("schema.*") and the search_path: paths split as PostgreSQL splits
// them, the statements that move the path, and whatever else changes it (set_config,
// pg_settings, stored settings, a schema renamed).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "policy/rules.h"

namespace pgwarden::policy {
namespace {

// A search_path value is read as PostgreSQL reads it (SplitIdentifierString): any whitespace of
// its scanner around names (a newline hid a schema from the old reading, found by attacker
// review), quoted names with "" and commas in them, unquoted ones folded, 63-byte names.
TEST(PolicyRules, SearchPathsAreSplitAsPostgreSQLSplitsThem) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_search_path("public,\nfinance"), (V{"public", "finance"}));
  EXPECT_EQ(split_search_path("\r\f\v\tpublic \n,\n FINANCE\n"), (V{"public", "finance"}));
  EXPECT_EQ(split_search_path("\"$user\", public"), (V{"$user", "public"}));
  EXPECT_EQ(split_search_path("\"my schema\", \"a,b\", \"q\"\"t\""),
            (V{"my schema", "a,b", "q\"t"}));
  EXPECT_EQ(split_search_path("\"Mixed\",Mixed"), (V{"Mixed", "mixed"}));
  EXPECT_EQ(split_search_path(""), V{});
  EXPECT_EQ(split_search_path("  "), V{});
  const std::string forbidden(63, 'f');
  EXPECT_EQ(split_search_path(forbidden + "tail"), V{forbidden});
  EXPECT_EQ(split_search_path("\"" + forbidden + "TAIL\""), V{forbidden});
  // Cut at a character's start: 62 ASCII bytes and a two-byte character.
  EXPECT_EQ(split_search_path(std::string(62, 'x') + "\xc3\xa9"), V{std::string(62, 'x')});
  // What PostgreSQL refuses sets no path: the names read so far are kept.
  EXPECT_EQ(split_search_path("a b"), V{"a"});
  EXPECT_EQ(split_search_path("a, \"open"), V{"a"});
  auto p = Policy::parse(R"({"rules": [{"name": "a", "forbidden_tables": ["finance.*"]}]})", "p");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ((*p)->forbidden_schema_in("public,\nfinance"), "finance");
  EXPECT_EQ((*p)->forbidden_schema_in("public,\"finance\""), "finance");
}

// What may leave the search_path naming schemas nobody judged from the text carries the
// kPathMoves mark (found by attacker review: a word scan missed escaped spellings).
TEST(PolicyRules, StatementsThatMoveTheSearchPathAreMarked) {
  auto p = Policy::parse(R"({"rules": [{"name": "a", "forbidden_tables": ["finance.*"]}]})", "p");
  ASSERT_TRUE(p.ok()) << p.error().message;
  PolicyEngine e;
  for (const char* moves :
       {"SET search_path TO DEFAULT", "RESET search_path", "SET LOCAL search_path = DEFAULT",
        "SET search_path = \"$user\", public", "SET search_path TO E'\\x24user'",
        "SET search_path TO U&\"\\0024user\"", "RESET ALL", "DISCARD ALL",
        "SELECT set_config('search_path', '$user', false)",
        // who may become which role, or a role's name ("$user" may name another schema)
        "CREATE ROLE finance", "CREATE USER x IN ROLE finance", "GRANT finance TO app",
        "ALTER ROLE app SUPERUSER", "ALTER ROLE x RENAME TO finance",
        "ALTER GROUP finance ADD USER app"}) {
    EXPECT_NE(e.parsed_classes_of(**p, moves) & kPathMoves, 0u) << moves;
  }
  for (const char* stays : {"SET search_path = public", "SET statement_timeout = 0", "SHOW role",
                            "DISCARD PLANS", "RESET statement_timeout", "SELECT 'RESET ALL'",
                            "ALTER TABLE t RENAME TO u", "GRANT SELECT ON t TO app"}) {
    EXPECT_EQ(e.parsed_classes_of(**p, stays) & kPathMoves, 0u) << stays;
  }
  EXPECT_EQ(class_names(kPathMoves | bit(StatementClass::Set)), "set");  // no name of its own
}

TEST(PolicyRules, ForbiddenSchemasOfASearchPathByRule) {
  auto p = Policy::parse(R"({"rules": [
      {"name": "a", "users": ["a"], "forbidden_tables": ["hr.*", "public.keys"]},
      {"name": "b", "users": ["b"], "forbidden_tables": ["ops.*"]}]})",
                         "p");
  ASSERT_TRUE(p.ok()) << p.error().message;
  const Rule* a = (*p)->match("a", {});
  const Rule* b = (*p)->match("b", {});
  // Before authentication (no rule yet): any rule's schema counts.
  EXPECT_EQ((*p)->forbidden_schema_in("public, ops"), "ops");
  EXPECT_EQ((*p)->forbidden_schema_in("\"$user\", hr"), "hr");
  EXPECT_EQ((*p)->forbidden_schema_in("public"), "");  // public.keys is a table, not the schema
  // A session's own rule only.
  EXPECT_EQ((*p)->forbidden_schema_in("public, ops", a), "");
  EXPECT_EQ((*p)->forbidden_schema_in("public, ops", b), "ops");
  EXPECT_EQ((*p)->forbidden_schema_in("HR, ops", a), "hr");    // unquoted names fold
  EXPECT_EQ((*p)->forbidden_schema_in("\"HR\", ops", a), "");  // a quoted one keeps its case
  EXPECT_EQ((*p)->forbidden_schema_in("hr", a), "hr");
}

// Found by an attack: the search_path changed by set_config or pg_settings, not SET.
TEST(PolicyRules, ForbiddenSchemaHoldsWhateverChangesTheSearchPath) {
  auto p = Policy::parse(R"({"rules":[{"name":"r","forbidden_tables":["hr.*"]}]})", "p.json");
  ASSERT_TRUE(p.ok()) << p.error().message;
  PolicyEngine e;
  const Rule* rule = &(*p)->rules()[0];
  for (const char* sql :
       {"SELECT set_config('search_path', 'hr', false)",
        "SELECT set_config('Search_Path', 'public, \"hr\"', true)",
        "SELECT set_config(name, 'x', false) FROM pg_settings",
        "SELECT set_config('search_path', current_setting('search_path') || ',hr', false)",
        "DO $$ BEGIN PERFORM set_config('search_path', 'hr', false); END $$",
        "UPDATE pg_settings SET setting = 'hr' WHERE name = 'search_path'",
        "UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name = 'search' || '_path'",
        // Code the server runs later (found by the fifth review): a view written through, an
        // aggregate or operator whose function is set_config.
        "CREATE VIEW ps AS SELECT * FROM pg_catalog.pg_settings",
        "CREATE RULE r AS ON INSERT TO t DO ALSO UPDATE pg_settings SET setting = 'x'",
        "CREATE AGGREGATE sp(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'x')",
        "CREATE OPERATOR ### (LEFTARG = text, RIGHTARG = text, FUNCTION = "
        "pg_catalog.set_config)",
        // A path stored to apply later (the seventh review): "$user" is whoever calls it.
        "ALTER FUNCTION f() SET search_path = \"$user\"",
        "ALTER PROCEDURE p() SET search_path TO DEFAULT",
        "ALTER SYSTEM SET search_path = '\"$user\", public'",
        // The schema renamed: its tables under another name.
        "ALTER SCHEMA hr RENAME TO x"}) {
    EXPECT_EQ(e.judge(**p, rule, sql).action, Action::Deny) << sql;
  }
  for (const char* sql :
       {"SELECT set_config('search_path', 'public, app', false)",
        "SELECT set_config('application_name', 'x', false)",
        "SELECT setting FROM pg_settings WHERE name = 'search_path'",
        "ALTER FUNCTION f() SET search_path = public", "ALTER SCHEMA ops RENAME TO ops2"}) {
    EXPECT_EQ(e.judge(**p, rule, sql).action, Action::Allow) << sql;
  }
}

// A schema renamed takes its tables along: under a rule on one of its tables, or on a table of
// that name in any schema, renaming it is refused (found by the seventh review).
TEST(PolicyRules, RenamingASchemaRefersToEveryTableInIt) {
  auto p = Policy::parse(R"({"rules":[{"name":"r","forbidden_tables":["ops.keys", "secrets"]}]})",
                         "p.json");
  ASSERT_TRUE(p.ok()) << p.error().message;
  PolicyEngine e;
  const Rule* rule = &(*p)->rules()[0];
  EXPECT_EQ(e.judge(**p, rule, "ALTER SCHEMA ops RENAME TO ops2").action, Action::Deny);
  EXPECT_EQ(e.judge(**p, rule, "ALTER SCHEMA app RENAME TO app2").action, Action::Deny);  // secrets
  auto q = Policy::parse(R"({"rules":[{"name":"r","forbidden_tables":["ops.keys"]}]})", "q.json");
  ASSERT_TRUE(q.ok()) << q.error().message;
  EXPECT_EQ(e.judge(**q, &(*q)->rules()[0], "ALTER SCHEMA app RENAME TO app2").action,
            Action::Allow);
}

}  // namespace
}  // namespace pgwarden::policy
