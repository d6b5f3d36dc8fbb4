// Role mappings from the policy file: the happy path and hostile or mistyped input.
#include "policy/client_auth.h"

#include <gtest/gtest.h>

namespace pgwarden::policy {
namespace {

TEST(RoleMappings, ParsesGroupsRolesDatabasesAndRoleChangeAllowance) {
  auto m = parse_role_mappings(R"({"role_mappings": [
      {"group": "analysts", "role": "analyst", "database": "shop"},
      {"group": "dba", "role": "admin", "allow_role_change": true}]})");
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[0].database, "shop");
  EXPECT_FALSE((*m)[0].allow_role_change);  // default: the caller stays in the mapped role
  EXPECT_EQ((*m)[1].database, "");
  EXPECT_TRUE((*m)[1].allow_role_change);
}

TEST(RoleMappings, RefusesMalformedEntriesNamingThePath) {
  const std::pair<const char*, const char*> cases[] = {
      {"not json", "not valid JSON"},
      {R"({"role_mappings": {}})", "$.role_mappings must be an array"},
      {R"({"role_mappings": [{"role": "r"}]})", "$.role_mappings[0].group"},
      {R"({"role_mappings": [{"group": "g", "role": ""}]})", "$.role_mappings[0].role"},
      {R"({"role_mappings": [{"group": "g", "role": "r", "database": 5}]})", ".database"},
      {R"({"role_mappings": [{"group": "g", "role": "r"},
          {"group": "h", "role": "r", "allow_role_change": "yes"}]})",
       "$.role_mappings[1].allow_role_change must be true or false"},
  };
  for (const auto& [json, why] : cases) {
    auto m = parse_role_mappings(json);
    ASSERT_FALSE(m.ok()) << json;
    EXPECT_NE(m.error().message.find(why), std::string::npos) << m.error().message;
  }
}

}  // namespace
}  // namespace pgwarden::policy
