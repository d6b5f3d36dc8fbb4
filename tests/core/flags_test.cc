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
  const ParsedFlags missing = parse_flags({});
  EXPECT_TRUE(missing.exit_now);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.message.find("--upstream is required"), std::string::npos);
}

TEST(FlagsTest, ParsesValuesSizesAndEqualsForm) {
  const ParsedFlags p = parse_flags({"--upstream=/tmp/pg", "--listen", "0.0.0.0:7000", "--threads",
                                     "4", "--max-buffered-bytes", "2M", "--max-message-size=64K",
                                     "--idle-timeout", "1.5", "--shutdown-grace", "0", "--no-pin"});
  ASSERT_FALSE(p.exit_now) << p.message;
  EXPECT_EQ(p.config.upstream, "/tmp/pg");
  EXPECT_EQ(p.config.threads, 4u);
  EXPECT_EQ(p.config.max_buffered_bytes, 2u << 20);
  EXPECT_EQ(p.config.max_message_size, 64u << 10);
  EXPECT_DOUBLE_EQ(p.config.idle_timeout_s, 1.5);
  EXPECT_DOUBLE_EQ(p.config.shutdown_grace_s, 0);
  EXPECT_FALSE(p.config.pin_threads);
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
  };
  for (const auto& args : bad) {
    const ParsedFlags p = parse_flags(args);
    EXPECT_TRUE(p.exit_now) << args.back();
    EXPECT_EQ(p.exit_code, 2) << args.back();
    EXPECT_EQ(p.message.rfind("pgwarden: ", 0), 0u) << p.message;
  }
}

TEST(FlagsTest, HelpAndVersionExitCleanly) {
  EXPECT_EQ(parse_flags({"--help"}).exit_code, 0);
  EXPECT_NE(parse_flags({"--help"}).message.find("--upstream"), std::string::npos);
  EXPECT_TRUE(parse_flags({"--version"}).exit_now);
}

}  // namespace
}  // namespace pgwarden::core
