#include "policy/role_guard.h"

#include <gtest/gtest.h>

namespace pgwarden::policy {
namespace {

std::string reason(const char* sql) {
  static Classifier c;
  return role_change_reason(c.analyze_parsed(sql, {}).classes);
}

TEST(RoleGuardTest, RefusesEveryFormOfRoleChange) {
  const char* hostile[] = {
      "SET ROLE postgres",
      "set role postgres",
      "SeT   RoLe\n\tpostgres",
      "SET/**/ROLE postgres",
      "SET /* nested /* comment */ */ ROLE postgres",
      "SET LOCAL ROLE postgres",
      "SET SESSION ROLE postgres",
      "RESET ROLE",
      "SET ROLE NONE",
      "SET SESSION AUTHORIZATION postgres",
      "SET SESSION AUTHORIZATION DEFAULT",
      "RESET SESSION AUTHORIZATION",
      "SET role TO 'postgres'",
      "SET \"role\" = 'postgres'",
      "SELECT 1; SET ROLE postgres; SELECT 2",
      "SELECT set_config('role', 'postgres', false)",
      "SELECT pg_catalog.set_config('role', 'postgres', false)",
      "SELECT set_config(lower('ROLE'), 'postgres', false)",
      "SELECT * FROM t WHERE set_config('session_authorization', 'postgres', true) IS NOT NULL",
      "WITH x AS (SELECT set_config('role','postgres',false)) SELECT * FROM x",
      "DO $$ BEGIN EXECUTE 'SET ROLE postgres'; END $$",
      "DO $x$ BEGIN PERFORM set_config('ro' || 'le', 'postgres', false); END $x$",
      "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ SELECT "
      "set_config('role','postgres',false) $$",
      "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role = postgres AS 'SELECT 1'",
      "ALTER ROLE analyst SET role = 'postgres'",
      "ALTER DATABASE postgres SET session_authorization = 'postgres'",
      "EXPLAIN ANALYZE SELECT set_config('role','postgres',false)",
      // Found by the parser, however spelled: quoted, upper case, Unicode escapes.
      "SET \"ROLE\" = 'postgres'",
      "SET \"Session_Authorization\" = 'postgres'",
      "SET U&\"rol\\0065\" = 'postgres'",
      "SET U&\"!0072ole\" UESCAPE '!' = 'postgres'",
      "SELECT U&\"set_confi\\0067\"('role', 'postgres', false)",
      "SELECT \"SET_CONFIG\"('role', 'postgres', false)",
      // DO blocks and dynamic SQL count as possible role changes.
      "DO $$ BEGIN EXECUTE 'SET ' || 'ROLE postgres'; END $$",
      "DO $$ BEGIN PERFORM 1; END $$",
      "CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE "
      "format('SET %s = %L', 'ro' || 'le', 'postgres'); END $$",
  };
  for (const char* sql : hostile) EXPECT_FALSE(reason(sql).empty()) << sql;
  // Deeper than pgwarden analyses: every class, the role change among them.
  std::string deep = "SELECT ";
  for (int i = 0; i < 600; ++i) deep += "abs(";
  deep += "1";
  for (int i = 0; i < 600; ++i) deep += ")";
  EXPECT_FALSE(reason(deep.c_str()).empty());
}

TEST(RoleGuardTest, AllowsOrdinaryStatementsEvenWhenTheyMentionRoles) {
  const char* fine[] = {
      "SELECT 1",
      "SELECT current_user, session_user",
      "SELECT 'SET ROLE postgres' AS text",
      "SELECT rolname FROM pg_roles WHERE rolname = 'role'",
      "-- SET ROLE postgres\nSELECT 1",
      "SELECT * FROM user_roles",
      "CREATE TABLE roles(id int, role text)",
      "INSERT INTO roles VALUES (1, 'authorization')",
      "SET search_path = public",
      "RESET ALL",
      "SHOW role",
      "SELECT current_setting('role')",
      "SELECT $$ set_config $$",
      "SELECT broken syntax role",  // does not parse: PostgreSQL will refuse it itself
  };
  for (const char* sql : fine) EXPECT_TRUE(reason(sql).empty()) << sql << ": " << reason(sql);
}

TEST(RoleGuardTest, FastPathCallsOnlyForLargeObjects) {
  ASSERT_NE(fast_path_function(954), nullptr);
  EXPECT_STREQ(fast_path_function(954)->name, "loread");
  EXPECT_EQ(fast_path_function(2078), nullptr);  // set_config
  std::size_t n = 0;
  fast_path_functions(n);
  EXPECT_EQ(n, 13u);
}

}  // namespace
}  // namespace pgwarden::policy
