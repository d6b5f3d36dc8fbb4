#include "core/flags.h"

#include <gtest/gtest.h>

namespace pgwarden::core {
namespace {

TEST(FlagsTest, DefaultsAndRequiredUpstream) {
  const ParsedFlags p = parse_flags({"--upstream", "127.0.0.1:5432"});
  ASSERT_FALSE(p.exit_now) << p.message;
  EXPECT_EQ(p.config.listen, "127.0.0.1:6432");
  EXPECT_EQ(p.config.upstream, "127.0.0.1:5432");
  EXPECT_EQ(p.config.threads, 0u);
  EXPECT_EQ(p.config.record_batch_ms, 10u);
  EXPECT_EQ(p.config.log_format, "text");
  EXPECT_EQ(p.config.log_rate_limit, 20u);
  const ParsedFlags missing = parse_flags({});
  EXPECT_TRUE(missing.exit_now);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.message.find("--upstream is required"), std::string::npos);
}

TEST(FlagsTest, ParsesValuesSizesAndEqualsForm) {
  const ParsedFlags p = parse_flags(
      {"--upstream=/tmp/pg", "--listen", "0.0.0.0:7000", "--threads", "4", "--max-buffered-bytes",
       "2M", "--max-message-size=64K", "--idle-timeout", "1.5", "--shutdown-grace", "0", "--no-pin",
       "--record-batch-ms", "2", "--log-format", "json", "--log-rate-limit=0"});
  ASSERT_FALSE(p.exit_now) << p.message;
  EXPECT_EQ(p.config.upstream, "/tmp/pg");
  EXPECT_EQ(p.config.threads, 4u);
  EXPECT_EQ(p.config.max_buffered_bytes, 2u << 20);
  EXPECT_EQ(p.config.max_message_size, 64u << 10);
  EXPECT_DOUBLE_EQ(p.config.idle_timeout_s, 1.5);
  EXPECT_DOUBLE_EQ(p.config.shutdown_grace_s, 0);
  EXPECT_FALSE(p.config.pin_threads);
  EXPECT_EQ(p.config.record_batch_ms, 2u);
  EXPECT_EQ(p.config.log_format, "json");
  EXPECT_EQ(p.config.log_rate_limit, 0u);
}

TEST(FlagsTest, RejectsBadInputWithAClearMessage) {
  const std::vector<std::vector<std::string>> bad = {
      {"--upstream", "x:1", "--threads", "many"},
      {"--upstream", "x:1", "--threads", "1000"},
      {"--upstream", "x:1", "--idle-timeout", "-1"},
      {"--upstream", "x:1", "--idle-timeout", "nan"},
      {"--upstream", "x:1", "--recv-buffers", "1000"},
      {"--upstream", "x:1", "--max-message-size", "2G"},
      {"--upstream", "x:1", "--bogus"},
      {"--upstream"},
      {"--upstream", "x:1", "--log-level", "loud"},
      {"--upstream", "x:1", "--log-format", "xml"},
      {"--upstream", "x:1", "--log-rate-limit", "-1"},
      {"--upstream", "x:1", "--record-batch-ms", "0"},
      {"--upstream", "x:1", "--record-batch-ms", "1001"},
  };
  for (const auto& args : bad) {
    const ParsedFlags p = parse_flags(args);
    EXPECT_TRUE(p.exit_now) << args.back();
    EXPECT_EQ(p.exit_code, 2) << args.back();
    EXPECT_EQ(p.message.rfind("pgwarden: ", 0), 0u) << p.message;
  }
}

TEST(FlagsTest, OidcKeySourcesAndIdentitySetting) {
  const std::vector<std::string> base = {"--upstream",         "x:1", "--policy",        "p",
                                         "--upstream-secrets", "s",   "--oidc-audience", "a",
                                         "--oidc-issuer",      "i"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return parse_flags(args);
  };
  for (const auto& good : std::vector<std::vector<std::string>>{
           {"--jwks-url", "https://idp.example.com/jwks"},
           {"--jwks-url", "http://127.0.0.1:8080/jwks", "--jwks-refresh", "60"},
           {"--jwks-url", "http://localhost/jwks"},
           {"--jwks-file", "k.json", "--identity-guc", "pgwarden.identity"},
           {"--jwks-file", "k.json", "--identity-guc", "my_app.caller_1.id"},
       }) {
    const ParsedFlags p = with(good);
    EXPECT_FALSE(p.exit_now) << good[1] << ": " << p.message;
  }
  for (const auto& bad : std::vector<std::vector<std::string>>{
           {"--jwks-url", "http://idp.example.com/jwks"},  // keys over plain http, off-host
           {"--jwks-url", "http://127.0.0.1.evil.com/jwks"},
           {"--jwks-url", "ftp://idp/jwks"},
           {"--jwks-url", "https://idp/jwks", "--jwks-file", "k.json"},
           {"--jwks-url", "https://idp/jwks", "--jwks-refresh", "0"},
           {"--jwks-file", "k.json", "--identity-guc", "identity"},  // not a custom setting
           {"--jwks-file", "k.json", "--identity-guc", "role"},
           {"--jwks-file", "k.json", "--identity-guc", "a..b"},
           {"--jwks-file", "k.json", "--identity-guc", "a.b;drop"},
           {"--jwks-file", "k.json", "--identity-guc", ".a"},
           {"--jwks-file", "k.json", "--identity-guc", "a.1b"},
       }) {
    const ParsedFlags p = with(bad);
    EXPECT_EQ(p.exit_code, 2) << bad[1] << " " << bad.back();
  }
  // Keys without an issuer: a token any issuer signed with them would do.
  const ParsedFlags no_issuer =
      parse_flags({"--upstream", "x:1", "--policy", "p", "--upstream-secrets", "s",
                   "--oidc-audience", "a", "--jwks-file", "k.json"});
  EXPECT_EQ(no_issuer.exit_code, 2);
  EXPECT_NE(no_issuer.message.find("--oidc-issuer"), std::string::npos) << no_issuer.message;
}

TEST(FlagsTest, MaxConnections) {
  EXPECT_EQ(parse_flags({"--upstream", "127.0.0.1:5432"}).config.max_connections, 10000u);
  EXPECT_EQ(parse_flags({"--upstream", "127.0.0.1:5432", "--max-connections", "0"})
                .config.max_connections,
            0u);
  EXPECT_EQ(parse_flags({"--upstream", "127.0.0.1:5432", "--max-connections", "20k"})
                .config.max_connections,
            20u << 10);
  EXPECT_TRUE(parse_flags({"--upstream", "127.0.0.1:5432", "--max-connections", "x"}).exit_now);
}

TEST(FlagsTest, Peers) {
  const ParsedFlags ok =
      parse_flags({"--upstream", "127.0.0.1:5432", "--peer-id", "2", "--peer", "1=10.0.0.1:6432",
                   "--peer", "2=10.0.0.2:6432", "--peer", "31=[::1]:6432"});
  ASSERT_FALSE(ok.exit_now) << ok.message;
  EXPECT_EQ(ok.config.peer_id, 2u);
  EXPECT_EQ(ok.config.peers.size(), 3u);
  EXPECT_EQ(parse_peer("31=[::1]:6432").id, 31u);
  EXPECT_EQ(parse_peer("31=[::1]:6432").address, "[::1]:6432");
  const auto error = [](std::vector<std::string> extra) {
    std::vector<std::string> args{"--upstream", "127.0.0.1:5432"};
    args.insert(args.end(), extra.begin(), extra.end());
    const ParsedFlags p = parse_flags(args);
    EXPECT_EQ(p.exit_code, 2) << extra.back();
    return p.message;
  };
  EXPECT_NE(error({"--peer", "1=h:1"}).find("--peer-id"), std::string::npos);
  EXPECT_NE(error({"--peer-id", "32"}).find("at most 31"), std::string::npos);
  for (const char* bad : {"0=h:1", "32=h:1", "x=h:1", "1=", "1=h", "=h:1", "1=/tmp/s:1", "h:1"}) {
    EXPECT_NE(error({"--peer-id", "1", "--peer", bad}).find("ID=HOST:PORT"), std::string::npos)
        << bad;
  }
  EXPECT_NE(error({"--peer-id", "1", "--peer", "2=a:1", "--peer", "2=b:1"}).find("twice"),
            std::string::npos);
}

TEST(FlagsTest, McpPool) {
  EXPECT_EQ(parse_flags({"--upstream", "127.0.0.1:5432"}).config.mcp_pool, 4u);
  const ParsedFlags p = parse_flags({"--upstream", "127.0.0.1:5432", "--mcp-pool", "0"});
  ASSERT_FALSE(p.exit_now) << p.message;
  EXPECT_EQ(p.config.mcp_pool, 0u);
  EXPECT_EQ(parse_flags({"--upstream", "127.0.0.1:5432", "--mcp-pool-idle", "2.5"})
                .config.mcp_pool_idle_s,
            2.5);
  const ParsedFlags big = parse_flags({"--upstream", "127.0.0.1:5432", "--mcp-pool", "999"});
  EXPECT_TRUE(big.exit_now);
  EXPECT_NE(big.message.find("--mcp-pool"), std::string::npos);
}

TEST(FlagsTest, HelpAndVersionExitCleanly) {
  EXPECT_EQ(parse_flags({"--help"}).exit_code, 0);
  EXPECT_NE(parse_flags({"--help"}).message.find("--upstream"), std::string::npos);
  EXPECT_TRUE(parse_flags({"--version"}).exit_now);
}

}  // namespace
}  // namespace pgwarden::core
