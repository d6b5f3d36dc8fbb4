#include "protocol/framer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "protocol/startup.h"
#include "tests/protocol/test_util.h"

namespace pgwarden::protocol {
namespace {

using testing::bytes;
using testing::ByteString;
using testing::msg;
using testing::u32;

struct Message {
  std::uint8_t type;
  ByteString wire;
  bool operator==(const Message&) const = default;
};

// Feeds `stream` to a framer in the given chunk sizes, reassembling messages the way the session
// does (held prefix + fragments). Startup-phase packets are untyped until a protocol-3 startup
// message; a lone 'N' answer to SSLRequest is skipped on the backend side.
struct Framed {
  std::vector<Message> messages;
  FeedStatus status = FeedStatus::Consumed;
  std::string error;
};

Framed frame(Side side, const ByteString& stream, const std::vector<std::size_t>& cuts,
             std::uint32_t max = 1u << 20) {
  Framer framer(side, max, /*typed=*/side == Side::Backend);
  Framed run;
  ByteString current;
  std::size_t start = 0;
  bool skip_ssl_answer = side == Side::Backend && !stream.empty() && stream[0] == std::byte{'N'};
  auto handler = [&](const Fragment& f) {
    if (f.first) {
      EXPECT_TRUE(current.empty());
      EXPECT_EQ(f.offset, framer.held_prefix().size());
      current.assign(framer.held_prefix().data(), framer.held_prefix().size());
    }
    EXPECT_EQ(f.offset, current.size());
    current.append(f.bytes.data(), f.bytes.size());
    if (f.last) {
      EXPECT_EQ(current.size(), f.size);
      if (f.type == 0 && current.size() >= 8 && read_u32(current.data() + 4) == kProtocolV3) {
        framer.set_typed(true);
      }
      run.messages.push_back({f.type, current});
      current.clear();
    }
    return Next::Continue;
  };
  std::vector<std::size_t> points = cuts;
  points.push_back(stream.size());
  for (std::size_t end : points) {
    if (end <= start) continue;
    std::size_t from = start;
    if (skip_ssl_answer) {
      skip_ssl_answer = false;
      ++from;
    }
    run.status = framer.feed({stream.data() + from, end - from}, handler);
    start = end;
    if (run.status != FeedStatus::Consumed) {
      run.error = framer.error();
      return run;
    }
  }
  EXPECT_TRUE(framer.at_boundary());
  return run;
}

ByteString concat(const std::vector<Message>& ms) {
  ByteString out;
  for (const auto& m : ms) out += m.wire;
  return out;
}

class RecordedConversationTest : public ::testing::TestWithParam<std::pair<const char*, Side>> {};

TEST_P(RecordedConversationTest, SplitAtEveryByteBoundaryGivesTheSameMessages) {
  const auto [file, side] = GetParam();
  const ByteString stream = testing::read_file(file);
  ASSERT_GT(stream.size(), 100u) << file;
  const Framed whole = frame(side, stream, {});
  ASSERT_EQ(whole.status, FeedStatus::Consumed) << whole.error;
  ASSERT_GT(whole.messages.size(), 5u);
  // Nothing lost or invented: the messages are the stream (minus the bare SSL answer byte).
  const std::size_t skipped = side == Side::Backend && stream[0] == std::byte{'N'} ? 1 : 0;
  EXPECT_EQ(concat(whole.messages), stream.substr(skipped));
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    const Framed split = frame(side, stream, {cut});
    ASSERT_EQ(split.status, FeedStatus::Consumed) << "cut at " << cut;
    ASSERT_EQ(split.messages, whole.messages) << "cut at " << cut;
  }
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < stream.size(); ++i) every.push_back(i);
  EXPECT_EQ(frame(side, stream, every).messages, whole.messages) << "one byte per read";
}

TEST_P(RecordedConversationTest, RandomChunkingGivesTheSameMessages) {
  const auto [file, side] = GetParam();
  const ByteString stream = testing::read_file(file);
  const Framed whole = frame(side, stream, {});
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::size_t> cuts;
    for (std::size_t pos = 0; pos < stream.size();) {
      pos += 1 + rng() % 40;
      if (pos < stream.size()) cuts.push_back(pos);
    }
    ASSERT_EQ(frame(side, stream, cuts).messages, whole.messages) << "round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(Captures, RecordedConversationTest,
                         ::testing::Values(std::pair{"psql.fe", Side::Frontend},
                                           std::pair{"psql.be", Side::Backend},
                                           std::pair{"pgbench.fe", Side::Frontend},
                                           std::pair{"pgbench.be", Side::Backend}));

TEST(FramerTest, RecordedPsqlSessionHasTheExpectedBackendTypes) {
  const Framed run = frame(Side::Backend, testing::read_file("psql.be"), {});
  std::string types;
  for (const auto& m : run.messages) types += static_cast<char>(m.type);
  for (char t : {'R', 'S', 'K', 'Z', 'T', 'D', 'C', 'H', 'd', 'c', 'G', 'E', 'N', 'A', 'I'}) {
    EXPECT_NE(types.find(t), std::string::npos) << "missing backend type " << t;
  }
}

TEST(FramerTest, SeveralFramesInOneRead) {
  const ByteString stream =
      msg('Q', std::string("SELECT 1") + '\0') + msg('S', "") + msg('H', "") + msg('X', "");
  Framer framer(Side::Frontend, 1 << 20, true);
  std::vector<char> types;
  EXPECT_EQ(framer.feed(stream,
                        [&](const Fragment& f) {
                          EXPECT_TRUE(f.first && f.last);
                          types.push_back(static_cast<char>(f.type));
                          return Next::Continue;
                        }),
            FeedStatus::Consumed);
  EXPECT_EQ(types, (std::vector<char>{'Q', 'S', 'H', 'X'}));
}

TEST(FramerTest, HandlerCanStopMidChunk) {
  const ByteString stream = msg('Q', std::string("a") + '\0') + msg('Q', std::string("b") + '\0');
  Framer framer(Side::Frontend, 1 << 20, true);
  int calls = 0;
  EXPECT_EQ(framer.feed(stream, [&](const Fragment&) { return ++calls, Next::Stop; }),
            FeedStatus::Stopped);
  EXPECT_EQ(calls, 1);
}

// Minimal valid bodies for every message type of each side.
TEST(FramerTest, AcceptsEveryFrontendMessageType) {
  const std::vector<std::pair<char, std::string>> cases = {
      {'B', std::string(8, '\0') + std::string("\0\0", 2)},
      {'C', std::string("S\0", 2)},
      {'d', "raw copy bytes"},
      {'c', ""},
      {'f', std::string("oops\0", 5)},
      {'D', std::string("P\0", 2)},
      {'E', std::string("\0\0\0\0\0", 5)},
      {'H', ""},
      {'F', std::string(10, '\0')},
      {'P', std::string("\0SELECT 1\0\0\0", 12)},
      {'p', std::string("secret\0", 7)},
      {'Q', std::string("SELECT 1\0", 9)},
      {'S', ""},
      {'X', ""},
  };
  for (const auto& [type, body] : cases) {
    Framer framer(Side::Frontend, 1 << 20, true);
    const ByteString m = msg(type, body);
    int seen = 0;
    ASSERT_EQ(framer.feed(m,
                          [&](const Fragment& f) {
                            EXPECT_EQ(f.type, static_cast<std::uint8_t>(type));
                            EXPECT_EQ(f.size, m.size());
                            ++seen;
                            return Next::Continue;
                          }),
              FeedStatus::Consumed)
        << type << ": " << framer.error();
    EXPECT_EQ(seen, 1) << type;
    EXPECT_FALSE(type_info(Side::Frontend, type).name.empty());
  }
}

TEST(FramerTest, AcceptsEveryBackendMessageType) {
  const std::string z2(2, '\0'), z4(4, '\0');
  const std::vector<std::pair<char, std::string>> cases = {
      {'R', z4},
      {'K', z4 + z4},
      {'2', ""},
      {'3', ""},
      {'C', std::string("SELECT 1\0", 9)},
      {'d', "row\n"},
      {'c', ""},
      {'G', std::string(3, '\0')},
      {'H', std::string(3, '\0')},
      {'W', std::string(3, '\0')},
      {'D', z2},
      {'I', ""},
      {'E', std::string("SERROR\0\0", 8)},
      {'V', z4},
      {'v', z4 + z4},
      {'n', ""},
      {'N', std::string("SNOTICE\0\0", 9)},
      {'A', z4 + std::string("c\0\0", 3)},
      {'t', z2},
      {'S', std::string("a\0b\0", 4)},
      {'1', ""},
      {'s', ""},
      {'Z', "I"},
      {'T', z2},
  };
  for (const auto& [type, body] : cases) {
    Framer framer(Side::Backend, 1 << 20, true);
    const ByteString m = msg(type, body);
    int seen = 0;
    ASSERT_EQ(framer.feed(m,
                          [&](const Fragment& f) {
                            ++seen;
                            EXPECT_TRUE(f.last);
                            return Next::Continue;
                          }),
              FeedStatus::Consumed)
        << type << ": " << framer.error();
    EXPECT_EQ(seen, 1) << type;
  }
}

TEST(FramerTest, RejectsUnknownTypes) {
  for (char type : {'A', 'Z', 'x', '\0', '\x7f'}) {  // backend-only or unassigned bytes
    Framer framer(Side::Frontend, 1 << 20, true);
    int seen = 0;
    EXPECT_EQ(framer.feed(msg(type, ""), [&](const Fragment&) { return ++seen, Next::Continue; }),
              FeedStatus::Malformed)
        << int(type);
    EXPECT_EQ(seen, 0);
    EXPECT_NE(framer.error().find("invalid frontend message type"), std::string::npos);
  }
  Framer backend(Side::Backend, 1 << 20, true);
  EXPECT_EQ(backend.feed(msg('Q', ""), [](const Fragment&) { return Next::Continue; }),
            FeedStatus::Malformed);
}

TEST(FramerTest, RejectsHostileLengthsBeforeReportingAnything) {
  const std::vector<std::uint32_t> bad = {0,         1,          2,          3,
                                          2'000'000, 0x7fffffff, 0x80000000, 0xffffffff};
  for (std::uint32_t len : bad) {
    for (std::size_t cut = 1; cut <= 5; ++cut) {
      Framer framer(Side::Frontend, 1'000'000, true);
      const ByteString m = ByteString{std::byte{'Q'}} + u32(len) + bytes("SELECT 1");
      int seen = 0;
      auto h = [&](const Fragment&) { return ++seen, Next::Continue; };
      auto st = framer.feed({m.data(), cut}, h);
      if (st == FeedStatus::Consumed) st = framer.feed({m.data() + cut, m.size() - cut}, h);
      EXPECT_EQ(st, FeedStatus::Malformed) << len;
      EXPECT_EQ(seen, 0) << len;
    }
  }
}

TEST(FramerTest, FixedSizeMessagesMustHaveTheirSize) {
  Framer fe(Side::Frontend, 1 << 20, true);
  EXPECT_EQ(fe.feed(msg('S', "x"), [](const Fragment&) { return Next::Continue; }),
            FeedStatus::Malformed);
  Framer be(Side::Backend, 1 << 20, true);
  EXPECT_EQ(be.feed(msg('Z', "II"), [](const Fragment&) { return Next::Continue; }),
            FeedStatus::Malformed);
  Framer key(Side::Backend, 1 << 20, true);
  EXPECT_EQ(key.feed(msg('K', "1234"), [](const Fragment&) { return Next::Continue; }),
            FeedStatus::Malformed);
}

TEST(FramerTest, MaxMessageSizeIsInclusive) {
  Framer ok(Side::Frontend, 4 + 9, true);
  EXPECT_EQ(ok.feed(msg('Q', std::string("SELECT 1\0", 9)),
                    [](const Fragment&) { return Next::Continue; }),
            FeedStatus::Consumed);
  Framer too_big(Side::Frontend, 4 + 8, true);
  EXPECT_EQ(too_big.feed(msg('Q', std::string("SELECT 1\0", 9)),
                         [](const Fragment&) { return Next::Continue; }),
            FeedStatus::Malformed);
}

TEST(FramerTest, StartupPacketLengthBounds) {
  for (std::uint32_t len : {0u, 4u, 7u, 10001u, 0x51000000u}) {
    Framer framer(Side::Frontend, 1 << 20, false);
    EXPECT_EQ(
        framer.feed(u32(len) + u32(kProtocolV3), [](const Fragment&) { return Next::Continue; }),
        FeedStatus::Malformed)
        << len;
    EXPECT_NE(framer.error().find("startup packet"), std::string::npos);
  }
}

TEST(FramerTest, BodySplitReportsFragmentsWithOffsets) {
  const ByteString m = msg('d', std::string(100, 'x'));
  Framer framer(Side::Frontend, 1 << 20, true);
  std::vector<std::pair<std::uint32_t, std::size_t>> seen;  // offset, size
  auto h = [&](const Fragment& f) {
    seen.emplace_back(f.offset, f.bytes.size());
    return Next::Continue;
  };
  ASSERT_EQ(framer.feed({m.data(), 3}, h), FeedStatus::Consumed);  // header incomplete
  EXPECT_TRUE(seen.empty());
  EXPECT_FALSE(framer.at_boundary());
  ASSERT_EQ(framer.feed({m.data() + 3, 50}, h), FeedStatus::Consumed);
  ASSERT_EQ(framer.feed({m.data() + 53, m.size() - 53}, h), FeedStatus::Consumed);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], (std::pair<std::uint32_t, std::size_t>{3, 50}));
  EXPECT_EQ(seen[1], (std::pair<std::uint32_t, std::size_t>{53, m.size() - 53}));
  EXPECT_TRUE(framer.at_boundary());
}

TEST(AssemblerTest, JoinsHeldPrefixAndFragments) {
  const ByteString m = msg('K', std::string("\0\0\0\1\0\0\0\2", 8));
  Framer framer(Side::Backend, 1 << 20, true);
  Assembler a;
  Bytes whole;
  auto h = [&](const Fragment& f) {
    const Bytes got = a.add(f, framer.held_prefix());
    if (f.last) whole = got;
    return Next::Continue;
  };
  ASSERT_EQ(framer.feed({m.data(), 2}, h), FeedStatus::Consumed);
  ASSERT_EQ(framer.feed({m.data() + 2, 7}, h), FeedStatus::Consumed);
  ASSERT_EQ(framer.feed({m.data() + 9, m.size() - 9}, h), FeedStatus::Consumed);
  EXPECT_EQ(ByteString(whole.data(), whole.size()), m);
}

// Guarantee 7: a declared length reserves nothing before its bytes arrive, and the memory of a
// large message is given back once it was handled.
TEST(AssemblerTest, ADeclaredLengthReservesNothingAndALargeMessageIsGivenBack) {
  Assembler a;
  const ByteString head = bytes("Q") + u32(1u << 30) + bytes("SELECT");
  const Fragment first{'Q', (1u << 30) + 1, 0, head, true, false};
  EXPECT_TRUE(a.add(first, {}).empty());
  EXPECT_LT(a.capacity(), 1u << 20);
  const ByteString big(200000, std::byte{'x'});
  Assembler b;
  const Fragment whole{'Q', static_cast<std::uint32_t>(big.size()), 0, big, true, true};
  EXPECT_EQ(b.add(whole, {}).size(), big.size());
  EXPECT_GE(b.capacity(), big.size());
  b.shrink();
  EXPECT_LE(b.capacity(), Assembler::kKeep);
}

}  // namespace
}  // namespace pgwarden::protocol
