#include "policy/role_guard.h"

#include <gtest/gtest.h>

namespace pgwarden::policy {
namespace {

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
  };
  for (const char* sql : hostile) EXPECT_FALSE(role_change_reason(sql).empty()) << sql;
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
  for (const char* sql : fine)
    EXPECT_TRUE(role_change_reason(sql).empty()) << sql << ": " << role_change_reason(sql);
}

}  // namespace
}  // namespace pgwarden::policy
