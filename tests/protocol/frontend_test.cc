#include "protocol/frontend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>

#include "tests/protocol/test_util.h"

namespace pgwarden::protocol {
namespace {

using testing::bytes;
using testing::ByteString;
using testing::msg;

std::string s16(std::uint16_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}
std::string s32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xff),
          static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
}
std::string z(std::string_view s) {
  return std::string(s) + std::string(1, '\0');
}

// Views point into the message: keep every message read alive for the test's duration.
bool reads(const ByteString& m, FrontendView& v, std::string& why) {
  static std::deque<ByteString> kept;
  kept.push_back(m);
  return read_frontend(kept.back(), v, why);
}

TEST(FrontendViewTest, ReadsEveryMessageOfTheReadyPhase) {
  FrontendView v;
  std::string why;
  ASSERT_TRUE(reads(msg('Q', z("SELECT 1")), v, why)) << why;
  EXPECT_EQ(v.text, "SELECT 1");
  EXPECT_TRUE(v.query);

  ASSERT_TRUE(reads(msg('P', z("s1") + z("SELECT $1") + s16(1) + s32(23)), v, why)) << why;
  EXPECT_EQ(v.name, "s1");
  EXPECT_EQ(v.text, "SELECT $1");
  EXPECT_EQ(v.param_count, 1);
  EXPECT_EQ(v.param_types.size(), 4u);

  const std::string bind = z("p") + z("s1") + s16(1) + s16(1) + s16(2) + s32(3) + "abc" +
                           s32(0xffffffff) + s16(1) + s16(1);
  ASSERT_TRUE(reads(msg('B', bind), v, why)) << why;
  EXPECT_EQ(v.name, "p");
  EXPECT_EQ(v.statement, "s1");
  EXPECT_EQ(v.param_count, 2);
  EXPECT_EQ(v.result_formats.size(), 2u);
  std::vector<std::pair<std::string, bool>> params;
  for_each_param(v, [&](std::uint16_t, std::string_view value, bool null, bool binary) {
    EXPECT_TRUE(binary);
    params.emplace_back(null ? "NULL" : std::string(value), null);
  });
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "abc");
  EXPECT_TRUE(params[1].second);

  ASSERT_TRUE(reads(msg('D', std::string("P") + z("p")), v, why));
  EXPECT_EQ(v.target, 'P');
  ASSERT_TRUE(reads(msg('C', std::string("S") + z("s1")), v, why));
  EXPECT_EQ(v.target, 'S');
  ASSERT_TRUE(reads(msg('E', z("p") + s32(10)), v, why));
  EXPECT_EQ(v.max_rows, 10);
  ASSERT_TRUE(reads(msg('F', s32(2078) + s16(0) + s16(1) + s32(2) + "ab" + s16(0)), v, why)) << why;
  EXPECT_EQ(v.function, 2078u);
  EXPECT_EQ(v.param_count, 1);
  for (char t : {'S', 'H', 'X', 'c'}) EXPECT_TRUE(reads(msg(t, ""), v, why)) << t;
  EXPECT_TRUE(reads(msg('d', std::string("\0\1binary", 8)), v, why));
  EXPECT_TRUE(reads(msg('f', z("client gave up")), v, why));
}

TEST(FrontendViewTest, RefusesWhatPostgresRefusesAsMalformed) {
  FrontendView v;
  std::string why;
  const std::vector<std::pair<std::string, ByteString>> bad = {
      {"query without terminator", msg('Q', "SELECT 1")},
      {"query with bytes after its string", msg('Q', z("SELECT 1") + "x")},
      {"parse missing parameter count", msg('P', z("") + z("SELECT 1"))},
      {"parse count larger than its types", msg('P', z("") + z("SELECT $1") + s16(2) + s32(23))},
      {"parse with trailing bytes", msg('P', z("") + z("SELECT 1") + s16(0) + "zz")},
      {"bind format count neither 0, 1 nor the parameter count",
       msg('B',
           z("") + z("") + s16(2) + s16(0) + s16(0) + s16(3) + s32(0) + s32(0) + s32(0) + s16(0))},
      {"bind value length past the end",
       msg('B', z("") + z("") + s16(0) + s16(1) + s32(100) + "abc" + s16(0))},
      {"bind negative value length",
       msg('B', z("") + z("") + s16(0) + s16(1) + s32(0xfffffffe) + s16(0))},
      {"bind missing result formats", msg('B', z("") + z("") + s16(0) + s16(0))},
      {"describe of something neither statement nor portal", msg('D', std::string("X") + z("p"))},
      {"close without name terminator", msg('C', std::string("S") + std::string("p"))},
      {"execute without row limit", msg('E', z("p"))},
      {"execute with trailing bytes", msg('E', z("p") + s32(0) + "!")},
      {"function call with too few argument bytes",
       msg('F', s32(1) + s16(0) + s16(1) + s32(8) + "ab" + s16(0))},
      {"function call negative argument size",
       msg('F', s32(1) + s16(0) + s16(1) + s32(0xfffffffd) + s16(0))},
      {"sync with a body", msg('S', "x")},
      {"copy fail without terminator", msg('f', "no end")},
      {"password message after startup", msg('p', z("secret"))},
      {"length field that disagrees with the bytes", ByteString(msg('Q', z("x"))).substr(0, 6)},
  };
  for (const auto& [name, m] : bad) {
    EXPECT_FALSE(read_frontend(m, v, why)) << name;
    EXPECT_FALSE(why.empty()) << name;
  }
}

TEST(FrontendViewTest, EncodersRoundTrip) {
  ByteString out;
  append_describe(out, 'P', "portal");
  append_execute(out, "portal", 5);
  append_copy_fail(out, "stop");
  FrontendView v;
  std::string why;
  const std::size_t d = out.size();
  ASSERT_GT(d, 0u);
  std::size_t pos = 0;
  std::vector<char> types;
  while (pos < out.size()) {
    const std::size_t len = 1 + read_u32(out.data() + pos + 1);
    ASSERT_TRUE(read_frontend(Bytes(out.data() + pos, len), v, why)) << why;
    types.push_back(v.type);
    if (v.type == 'E') {
      EXPECT_EQ(v.max_rows, 5);
    } else if (v.type == 'D') {
      EXPECT_EQ(v.name, "portal");
    } else {
      EXPECT_EQ(v.text, "stop");
    }
    pos += len;
  }
  EXPECT_EQ(types, (std::vector<char>{'D', 'E', 'f'}));
}

// The pooler stage's rewrites: a Parse with its parameter types under another name, and a Bind
// naming another statement with everything else as it was.
TEST(FrontendViewTest, ParsesAndBindsAreRewrittenUnderAnotherName) {
  FrontendView p;
  std::string why;
  ASSERT_TRUE(reads(msg('P', z("s1") + z("SELECT $1, $2") + s16(2) + s32(23) + s32(25)), p, why));
  ByteString parse;
  append_parse_typed(parse, "", p.text, p.param_types);
  FrontendView q;
  ASSERT_TRUE(reads(parse, q, why)) << why;
  EXPECT_EQ(q.name, "");
  EXPECT_EQ(q.text, "SELECT $1, $2");
  EXPECT_EQ(q.param_count, 2);
  EXPECT_TRUE(std::equal(q.param_types.begin(), q.param_types.end(), p.param_types.begin(),
                         p.param_types.end()));
  const std::string rest = s16(1) + s16(1) + s16(2) + s32(4) + "abcd" + s32(0xffffffff) + s16(0);
  FrontendView b;
  ASSERT_TRUE(reads(msg('B', z("portal") + z("s1") + rest), b, why)) << why;
  ByteString bind;
  append_bind_of(bind, b, "");
  EXPECT_EQ(bind, msg('B', z("portal") + z("") + rest));
  bind.clear();
  append_bind_of(bind, b, "a longer statement name");
  FrontendView c;
  ASSERT_TRUE(reads(bind, c, why)) << why;
  EXPECT_EQ(c.name, "portal");
  EXPECT_EQ(c.statement, "a longer statement name");
  EXPECT_EQ(c.param_count, 2);
}

}  // namespace
}  // namespace pgwarden::protocol
