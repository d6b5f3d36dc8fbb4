#include "protocol/startup.h"

#include <gtest/gtest.h>

#include "tests/protocol/test_util.h"

namespace pgwarden::protocol {
namespace {

using testing::bytes;
using testing::ByteString;
using testing::u32;

ByteString packet(std::uint32_t code, std::string_view body) {
  return u32(static_cast<std::uint32_t>(8 + body.size())) + u32(code) + bytes(body);
}

TEST(StartupTest, ParsesStartupMessageAndParameters) {
  const std::string body("user\0alice\0database\0db1\0application_name\0psql\0\0", 47);
  const ByteString p = packet(kProtocolV3, body);
  const auto r = parse_startup(p);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->kind, StartupKind::Startup);
  EXPECT_EQ(r->major, 3);
  EXPECT_EQ(startup_param(r->params, "user"), "alice");
  EXPECT_EQ(startup_param(r->params, "database"), "db1");
  EXPECT_EQ(startup_param(r->params, "application_name"), "psql");
  EXPECT_FALSE(startup_param(r->params, "options").has_value());
  EXPECT_FALSE(startup_param(r->params, "alice").has_value());  // values are not names
}

TEST(StartupTest, AcceptsNewerMinorVersionForTheServerToNegotiate) {
  const auto r = parse_startup(packet(kProtocolV3 | 2, std::string("user\0a\0\0", 8)));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->minor, 2);
}

TEST(StartupTest, RecognisesEncryptionAndCancelRequests) {
  EXPECT_EQ(parse_startup(packet(kSslRequestCode, ""))->kind, StartupKind::SslRequest);
  EXPECT_EQ(parse_startup(packet(kGssEncRequestCode, ""))->kind, StartupKind::GssEncRequest);
  const auto c = parse_startup(packet(kCancelRequestCode, std::string("\0\0\0\7\0\0\1\0", 8)));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, StartupKind::Cancel);
  EXPECT_EQ(c->cancel, (BackendKey{7, 256}));
}

TEST(StartupTest, RejectsUnsupportedProtocolVersionsWith0A000Class) {
  for (std::uint32_t v : {2u << 16, 4u << 16, 0u, 1234u << 16}) {
    const auto r = parse_startup(packet(v, std::string("user\0a\0\0", 8)));
    ASSERT_FALSE(r.ok()) << v;
    EXPECT_EQ(r.error().code, Errc::Unsupported);
    EXPECT_NE(r.error().message.find("unsupported frontend protocol"), std::string::npos);
  }
}

TEST(StartupTest, RejectsMalformedLayouts) {
  const std::vector<std::string> bad = {
      std::string(""),                          // no terminator at all
      std::string("user\0alice\0", 11),         // missing final terminator
      std::string("user\0alice", 10),           // unterminated value
      std::string("user\0\0", 6),               // value runs into the terminator
      std::string("\0alice\0\0", 8),            // empty name
      std::string("user", 4),                   // no NULs
      std::string("user\0alice\0\0extra", 17),  // bytes after the terminator
  };
  for (const auto& body : bad) {
    const auto r = parse_startup(packet(kProtocolV3, body));
    ASSERT_FALSE(r.ok()) << body.size();
    EXPECT_NE(r.error().code, Errc::Unsupported);
  }
}

TEST(StartupTest, MissingUserIsRejected) {
  const auto r = parse_startup(packet(kProtocolV3, std::string("database\0db\0\0", 13)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::Rejected);
}

TEST(StartupTest, WrongLengthsAreMalformed) {
  EXPECT_FALSE(parse_startup(packet(kSslRequestCode, "xx")).ok());
  EXPECT_FALSE(parse_startup(packet(kCancelRequestCode, "1234")).ok());
  ByteString lying = packet(kProtocolV3, std::string("user\0a\0\0", 8));
  lying[3] = std::byte{99};  // length word disagrees with the packet
  EXPECT_FALSE(parse_startup(lying).ok());
  EXPECT_FALSE(parse_startup(u32(4)).ok());
}

}  // namespace
}  // namespace pgwarden::protocol
