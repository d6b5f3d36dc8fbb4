// Agents acting for users (a token's "act"): which rules and masking profiles take their
// sessions, and how `SET pgwarden.token` is told apart from every other text naming the setting.
#include <gtest/gtest.h>

#include "policy/internal_login.h"
#include "policy/rules.h"
#include "policy/sqlcommenter.h"
#include "policy/token_setting.h"

namespace pgwarden::policy {
namespace {

const char* kPolicy = R"({
  "may_act": [
    {"actor": "agent-7", "for_groups": ["analysts", "dba"], "actor_groups": ["ai-agents"]},
    {"actor": "orchestrator"},
    {"actor": "dba-bot", "for_groups": ["dba"]}
  ],
  "rules": [
    {"name": "dba agent may drop", "actors": ["dba-bot"], "groups": ["dba"], "allow": ["drop"]},
    {"name": "agents", "actor_groups": ["ai-agents"], "deny": ["drop", "truncate"],
     "require_approval": ["delete"]},
    {"name": "dba", "groups": ["dba"]},
    {"name": "analysts", "groups": ["analysts"], "read_only": true}
  ],
  "masking": [
    {"name": "agents see less", "actor_groups": ["ai-agents"], "detectors": {"email": "redact"}},
    {"name": "analysts", "groups": ["analysts"], "detectors": {"email": "partial", "phone": "redact"}}
  ]
})";

std::shared_ptr<const Policy> policy() {
  auto p = Policy::parse(kPolicy, "p.json");
  EXPECT_TRUE(p.ok()) << p.error().message;
  return *p;
}

TEST(Agents, OnlyRulesForAgentsTakeAnAgentsSession) {
  const auto p = policy();
  const std::vector<std::string> dba = {"dba"}, analysts = {"analysts"}, other = {"sales"};
  // The user alone: rules for agents never apply.
  EXPECT_EQ(p->match("dana", dba)->name, "dba");
  EXPECT_EQ(p->match("ann", analysts)->name, "analysts");
  // An agent acting for a DBA gets the agents' rule, not the DBA's: it cannot DROP.
  EXPECT_EQ(p->match(Who{"dana", &dba, "agent-7", nullptr})->name, "agents");
  // An agent with a rule of its own for DBAs gets that one.
  EXPECT_EQ(p->match(Who{"dana", &dba, "dba-bot", nullptr})->name, "dba agent may drop");
  // An agent no rule is for, or one that may not act for this user: every statement denied.
  const Rule* none = p->match(Who{"dana", &dba, "orchestrator", nullptr});
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(none->name, "(no rule for this agent)");
  EXPECT_EQ(none->denied(), bit(StatementClass::kCount) - 1);
  EXPECT_FALSE(p->has_rule_for(Who{"dana", &dba, "orchestrator", nullptr}));
  EXPECT_FALSE(p->has_rule_for(Who{"sam", &other, "agent-7", nullptr}));
  EXPECT_FALSE(p->has_rule_for(Who{"ann", &analysts, "dba-bot", nullptr}));
  EXPECT_TRUE(p->has_rule_for(Who{"ann", &analysts, "agent-7", nullptr}));
  EXPECT_EQ(p->match(Who{"ann", &analysts, "unknown-agent", nullptr})->name,
            "(no rule for this agent)");
  // A chain: every agent in it must still be allowed for the user (after a reload, too).
  const std::vector<std::string> allowed{"agent-7", "orchestrator"};
  EXPECT_EQ(p->match(Who{"ann", &analysts, "agent-7", nullptr, &allowed})->name, "agents");
  const std::vector<std::string> broken{"agent-7", "unknown-agent"};
  EXPECT_EQ(p->match(Who{"ann", &analysts, "agent-7", nullptr, &broken})->name,
            "(no rule for this agent)");
  const std::vector<std::string> not_for_ann{"agent-7", "dba-bot"};
  EXPECT_EQ(p->match(Who{"ann", &analysts, "agent-7", nullptr, &not_for_ann})->name,
            "(no rule for this agent)");
}

TEST(Agents, MayActNamesWhoMayActForWhom) {
  const auto p = policy();
  const std::vector<std::string> dba = {"dba"}, analysts = {"analysts"}, other = {"sales"};
  ASSERT_NE(p->may_act("agent-7", analysts), nullptr);
  EXPECT_EQ(p->may_act("agent-7", analysts)->actor_groups, std::vector<std::string>{"ai-agents"});
  EXPECT_EQ(p->may_act("agent-7", other), nullptr);       // not for this user's groups
  EXPECT_NE(p->may_act("orchestrator", other), nullptr);  // for anyone
  EXPECT_EQ(p->may_act("dba-bot", analysts), nullptr);
  EXPECT_EQ(p->may_act("Agent-7", analysts), nullptr);  // exact names
}

TEST(Agents, MaskingProfilesForAgentsElseTheUsers) {
  const auto p = policy();
  const std::vector<std::string> analysts = {"analysts"}, dba = {"dba"};
  EXPECT_EQ(p->mask_profile("ann", analysts)->name, "analysts");
  EXPECT_EQ(p->mask_profile(Who{"ann", &analysts, "agent-7", nullptr})->name, "agents see less");
  // No profile for this agent: the user's own profile still applies.
  EXPECT_EQ(p->mask_profile(Who{"ann", &analysts, "orchestrator", nullptr})->name, "analysts");
  EXPECT_EQ(p->mask_profile(Who{"dana", &dba, "dba-bot", nullptr}), nullptr);
}

TEST(Agents, PolicyFileErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"may_act": {}})", "p.json: $.may_act: must be an array"},
      {R"({"may_act": [{"for_groups": ["a"]}]})", "p.json: $.may_act[0].actor"},
      {R"({"may_act": [{"actor": "x", "as": "y"}]})", "p.json: $.may_act[0].as: unknown key"},
      {R"({"may_act": [{"actor": "x", "actor_groups": "g"}]})",
       "p.json: $.may_act[0].actor_groups"},
      {R"({"rules": [{"name": "a", "actors": "x"}]})", "p.json: $.rules[0].actors"},
      {R"({"masking": [{"name": "a", "actor_groups": [1]}]})", "p.json: $.masking[0].actor_groups"},
  };
  for (const auto& [json, want] : cases) {
    auto p = Policy::parse(json, "p.json");
    ASSERT_FALSE(p.ok()) << json;
    EXPECT_EQ(p.error().message.rfind(want, 0), 0u) << p.error().message;
  }
}

TEST(TokenSetting, TheExactFormIsTakenAndEveryOtherMentionRefused) {
  std::string_view token;
  for (const char* sql :
       {"SET pgwarden.token = 'aaa.bbb.ccc'", "set PGWARDEN.TOKEN to 'a-b_c.d'",
        " SET SESSION pgwarden.token='x.y.z' ;", "SET pgwarden.token\n=\n'eyJ.eyJ.sig';\n"}) {
    token = {};
    EXPECT_EQ(token_setting(sql, token), TokenSetting::Refresh) << sql;
    EXPECT_FALSE(token.empty()) << sql;
  }
  EXPECT_EQ((token_setting("SET pgwarden.token = 'aaa.bbb.ccc'", token), token), "aaa.bbb.ccc");
  for (const char* sql :
       {"SET \"pgwarden\".\"token\" = 'a.b.c'", "SET pgwarden . token = 'a.b.c'",
        "SET LOCAL pgwarden.token = 'a.b.c'", "SET pgwarden.token = 'a.b.c'; SELECT 1",
        "SELECT 1; SET pgwarden.token = 'a.b.c'", "SELECT set_config('pgwarden.token', 'x', false)",
        "SHOW pgwarden.token", "RESET pgwarden.token", "SET pgwarden.token = ''",
        "SET pgwarden.token = 'a''b'", "SET pgwarden.token = E'a.b'", "SET pgwarden.token = a.b",
        "/* c */ SET pgwarden.token = 'a.b.c'", "SET pgwarden.token = 'a b'",
        "select 'PgWarden\" .  \"Token'",
        // Comments, and escapes only PostgreSQL's lexer reads (found by review):
        "SET pgwarden/**/.token = 'a.b.c'", "SET pgwarden/* x /* y */ z */.token = 'a.b.c'",
        "SET pgwarden.-- c\ntoken = 'a.b.c'", "SET U&\"pgw\\0061rden\".token = 'a.b.c'",
        "SET pgwarden.U&\"t\\006Fken\" = 'a.b.c'",
        "SET U&\"\\0070gwarden\" . U&\"!0074oken\" UESCAPE '!' = 'a.b.c'",
        "SELECT set_config(E'\\160gwarden.\\164oken', 'x', false)",
        "SELECT set_config(U&'pgwarden\\002Etoken', 'x', false)"}) {
    EXPECT_EQ(token_setting(sql, token), TokenSetting::Other) << sql;
  }
  for (const char* sql :
       {"SELECT 1", "SET pgwarden.identity = 'x'", "SELECT pgwarden_token",
        "SELECT set_config('application_name', 'x', false)", "SELECT U&'d\\0061t\\+000061'",
        "SET application_name = 'pgwarden'", "pgwarden", ""}) {
    EXPECT_EQ(token_setting(sql, token), TokenSetting::None) << sql;
  }
}

TEST(SqlCommenter, IntentAndTraceContextFromTheStatementsComment) {
  const auto t = comment_tags(
      "SELECT * FROM orders /*intent='list%20late%20orders',"
      "traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',tracestate='a%3Db'*/"
      ";");
  EXPECT_EQ(t.intent, "list late orders");
  EXPECT_EQ(t.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(t.tracestate, "a=b");
  EXPECT_EQ(comment_tags("/* intent='first' */ SELECT 1").intent, "first");
  EXPECT_EQ(comment_tags("SELECT 1 /*intent='it\\'s'*/").intent, "it's");
  EXPECT_EQ(comment_tags("SELECT 1 /*action='x',intent='y'*/").intent, "y");
  for (const char* sql : {"SELECT 1", "SELECT 1 /* plain comment */", "SELECT 1 /*intent=x*/",
                          "SELECT 1 /*intent='%zz'*/", "SELECT 1 /*intent='open*/",
                          "SELECT '/*intent=''x''*/' AS s", "/**/", "*/", ""}) {
    EXPECT_TRUE(comment_tags(sql).empty()) << sql;
  }
  const std::string big = "SELECT 1 /*intent='" + std::string(5000, 'a') + "'*/";
  EXPECT_EQ(comment_tags(big).intent.size(), kMaxTagValue);
}

TEST(InternalLogins, HandoverTokensCarryAOneTimeLoginOnce) {
  InternalLogins logins;
  AuthenticatedCaller c;
  c.identity = "wes@example.com";
  const auto login = logins.issue(c, 1000);
  ASSERT_TRUE(login.has_value());
  const std::string token = InternalLogins::handover_token(login->first, login->second);
  ASSERT_TRUE(token.starts_with(InternalLogins::kHandoverPrefix));
  // Only characters a pgwarden.token setting may carry.
  EXPECT_EQ(
      token.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."),
      std::string::npos);
  const auto back = InternalLogins::from_handover_token(token);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->first, login->first);
  EXPECT_EQ(back->second, login->second);
  EXPECT_EQ(logins.take(back->first, back->second, 1001)->identity, "wes@example.com");
  EXPECT_FALSE(logins.take(back->first, back->second, 1001).has_value()) << "used once";
  for (const char* bad :
       {"", "eyJhbGciOi.x.y", "pgwarden-mcp-handover.", "pgwarden-mcp-handover.abc",
        "pgwarden-mcp-handover..pw", "pgwarden-mcp-handover.abc."}) {
    EXPECT_FALSE(InternalLogins::from_handover_token(bad).has_value()) << bad;
  }
  EXPECT_TRUE(InternalLogins::handover_token("someone", "pw").empty());
  // Expired logins are refused.
  const auto old = logins.issue(c, 1000);
  EXPECT_FALSE(
      logins.take(old->first, old->second, 1000 + InternalLogins::kValidSeconds).has_value());
}

TEST(SqlCommenter, ApplicationNameCarriesTheSessionsIntentAndTrace) {
  const auto t = application_tags("nightly-report intent='month%20end',traceparent='00-ab-cd-01'");
  EXPECT_EQ(t.intent, "month end");
  EXPECT_EQ(t.traceparent, "00-ab-cd-01");
  EXPECT_EQ(application_tags("app /*intent='x'*/").intent, "x");
  // MCP keys are pgwarden's own: never taken from a client's application_name.
  const auto m = application_tags("app mcp_session='s',tool='query',intent='y'");
  EXPECT_EQ(m.intent, "y");
  EXPECT_TRUE(m.mcp_session.empty());
  EXPECT_TRUE(m.tool.empty());
  for (const char* app :
       {"", "psql", "my app", "app intent=unquoted", "app a='b' c='d'", "app intent='%zz'"}) {
    EXPECT_TRUE(application_tags(app).empty()) << app;
  }
}

TEST(SqlCommenter, TheStatementAfterTheMcpEndpointsComment) {
  EXPECT_EQ(after_mcp_comment("/*mcp_session='a',intent='b%2A%2F'*/ DELETE FROM t"),
            "DELETE FROM t");
  EXPECT_EQ(after_mcp_comment("  /*x*/\n\tSELECT /* kept */ 1"), "SELECT /* kept */ 1");
  EXPECT_EQ(after_mcp_comment("SELECT 1 /*intent='x'*/"), "SELECT 1 /*intent='x'*/");
  EXPECT_EQ(after_mcp_comment("/* unterminated SELECT 1"), "/* unterminated SELECT 1");
  EXPECT_EQ(after_mcp_comment(""), "");
}

}  // namespace
}  // namespace pgwarden::policy
