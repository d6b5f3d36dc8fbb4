#include "protocol/messages.h"

#include <gtest/gtest.h>

#include "tests/protocol/test_util.h"

namespace pgwarden::protocol {
namespace {

using testing::ByteString;
using testing::msg;

TEST(MessagesTest, ErrorResponseRoundTripsAndFrames) {
  ByteString out;
  append_error(out, "FATAL", "08P01", "invalid frontend message type 0");
  const auto e = read_error(out);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->severity, "FATAL");
  EXPECT_EQ(e->sqlstate, "08P01");
  EXPECT_EQ(e->message, "invalid frontend message type 0");
  // The framer accepts what we build.
  Framer f(Side::Backend, 1 << 20, true);
  int n = 0;
  EXPECT_EQ(f.feed(out,
                   [&](const Fragment& fr) {
                     ++n;
                     EXPECT_TRUE(fr.last);
                     return Next::Continue;
                   }),
            FeedStatus::Consumed);
  EXPECT_EQ(n, 1);
}

TEST(MessagesTest, ErrorTextWithNulIsCutNotCorrupting) {
  ByteString out;
  append_error(out, "FATAL", "08P01", std::string_view("bad\0tail", 8));
  const auto e = read_error(out);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message, "bad");
}

TEST(MessagesTest, MalformedErrorFieldsAreRejected) {
  EXPECT_FALSE(read_error(msg('E', "SFATAL")).has_value());                    // unterminated
  EXPECT_FALSE(read_error(msg('E', std::string("SFATAL\0", 7))).has_value());  // no final 0
  EXPECT_TRUE(read_error(msg('E', std::string("SFATAL\0\0", 8))).has_value());
}

TEST(MessagesTest, BackendKeyDataReadWrite) {
  ByteString k;
  append_backend_key(k, {1234, -5});
  EXPECT_EQ(read_backend_key(k), (BackendKey{1234, -5}));
  write_backend_key({k.data(), k.size()}, {77, 88});
  EXPECT_EQ(read_backend_key(k), (BackendKey{77, 88}));
  EXPECT_FALSE(read_backend_key(msg('K', "1234")).has_value());
}

TEST(MessagesTest, ReadyForQueryStatus) {
  EXPECT_EQ(read_ready_status(msg('Z', "I")), 'I');
  EXPECT_EQ(read_ready_status(msg('Z', "T")), 'T');
  EXPECT_EQ(read_ready_status(msg('Z', "E")), 'E');
  EXPECT_EQ(read_ready_status(msg('Z', "Q")), 0);
}

TEST(MessagesTest, CancelRequestLayout) {
  ByteString c;
  append_cancel_request(c, {42, 99});
  ASSERT_EQ(c.size(), 16u);
  EXPECT_EQ(read_u32(c.data()), 16u);
  EXPECT_EQ(read_u32(c.data() + 4), kCancelRequestCode);
  EXPECT_EQ(read_u32(c.data() + 8), 42u);
  EXPECT_EQ(read_u32(c.data() + 12), 99u);
}

TEST(MessagesTest, QueryParseAndReadyForQueryBuilders) {
  ByteString out;
  append_ready_for_query(out, 'T');
  EXPECT_EQ(read_ready_status(out), 'T');
  out.clear();
  append_query(out, "SELECT 1");
  const std::string q(reinterpret_cast<const char*>(out.data()), out.size());
  EXPECT_EQ(q, std::string("Q\0\0\0\x0dSELECT 1\0", 14));
  out.clear();
  append_parse(out, "s1", "x");
  const std::string p(reinterpret_cast<const char*>(out.data()), out.size());
  EXPECT_EQ(p, std::string("P\0\0\0\x0bs1\0x\0\0\0", 12));
}

}  // namespace
}  // namespace pgwarden::protocol
