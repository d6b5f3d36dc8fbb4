#include "core/log_line.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <random>
#include <string>

namespace pgwarden::core {
namespace {

LogFields fields(LogLevel level = LogLevel::Warn, int core = -1) {
  LogFields f;
  f.level = level;
  f.time.tv_sec = 1'796'000'000;  // 2026-11-30T00:53:20Z
  f.time.tv_nsec = 123'456'789;
  f.core = core;
  return f;
}

std::string line(LogFormat format, std::string_view msg, const LogFields& f = fields()) {
  char out[kMaxLogLine];
  return std::string(out, format_log_line(out, sizeof out, format, f, msg));
}

// The message of a text line (after "TIME LEVEL "), without the newline.
std::string text_message(std::string_view msg) {
  const std::string l = line(LogFormat::Text, msg);
  const auto space = l.find(' ', l.find(' ') + 1);
  return l.substr(space + 1, l.size() - space - 2);
}

// Parses a JSON line (simdjson checks strict JSON and UTF-8) and returns its "msg".
std::string json_message(const std::string& l, simdjson::dom::element* doc_out = nullptr) {
  static simdjson::dom::parser parser;
  EXPECT_EQ(l.back(), '\n');
  EXPECT_EQ(l.find('\n'), l.size() - 1) << l;
  simdjson::dom::element doc;
  const auto error = parser.parse(l.data(), l.size() - 1).get(doc);
  EXPECT_EQ(error, simdjson::SUCCESS) << l;
  if (error) return {};
  if (doc_out != nullptr) *doc_out = doc;
  std::string_view msg;
  EXPECT_EQ(doc["msg"].get(msg), simdjson::SUCCESS) << l;
  return std::string(msg);
}

bool valid_utf8(std::string_view s) {
  return simdjson::validate_utf8(s.data(), s.size());
}

TEST(LogLineTest, TextKeepsTheLineFormat) {
  EXPECT_EQ(line(LogFormat::Text, "pgwarden listening on 127.0.0.1:6432"),
            "2026-11-30T00:53:20.123456Z WARN pgwarden listening on 127.0.0.1:6432\n");
  EXPECT_EQ(line(LogFormat::Text, "x", fields(LogLevel::Error, 3)),
            "2026-11-30T00:53:20.123456Z ERROR x\n");
}

TEST(LogLineTest, JsonIsOneObjectWithCoreWhereKnown) {
  EXPECT_EQ(line(LogFormat::Json, "hello \"you\"", fields(LogLevel::Info, 3)),
            "{\"time\":\"2026-11-30T00:53:20.123456Z\",\"level\":\"info\",\"msg\":\"hello "
            "\\\"you\\\"\",\"core\":3}\n");
  EXPECT_EQ(line(LogFormat::Json, "x", fields(LogLevel::Debug)),
            "{\"time\":\"2026-11-30T00:53:20.123456Z\",\"level\":\"debug\",\"msg\":\"x\"}\n");
}

TEST(LogLineTest, SummaryAndDropNotice) {
  LogFields f = fields();
  f.repeated = 980;
  f.interval_s = 1.04;
  EXPECT_EQ(line(LogFormat::Text, "bad login", f),
            "2026-11-30T00:53:20.123456Z WARN bad login (repeated 980 times in the last 1.0s)\n");
  simdjson::dom::element doc;
  EXPECT_EQ(json_message(line(LogFormat::Json, "bad login", f), &doc), "bad login");
  EXPECT_EQ(doc["repeated"].get_uint64().value(), 980u);
  EXPECT_DOUBLE_EQ(doc["interval_s"].get_double().value(), 1.0);
  f = fields();
  f.dropped = 7;
  EXPECT_EQ(json_message(line(LogFormat::Json, "7 log lines dropped", f), &doc),
            "7 log lines dropped");
  EXPECT_EQ(doc["dropped"].get_uint64().value(), 7u);
}

TEST(LogLineTest, ControlCharactersAreEscapedVisibly) {
  EXPECT_EQ(text_message("a\nb\r\tc\x1b[31m\x7f\x01"), "a\\nb\\r\\tc\\x1b[31m\\x7f\\x01");
  // A client cannot start a line of its own, nor make an escape look like one.
  EXPECT_EQ(text_message("user\n2026-01-01T00:00:00.000000Z INFO forged"),
            "user\\n2026-01-01T00:00:00.000000Z INFO forged");
  EXPECT_EQ(text_message("C:\\x1b"), "C:\\\\x1b");
  // JSON carries the same visible text, so a viewer printing msg prints no control character.
  EXPECT_EQ(json_message(line(LogFormat::Json, "a\nb\x1b\\")), "a\\nb\\x1b\\\\");
}

TEST(LogLineTest, InvalidUtf8AndInvisibleCharacters) {
  EXPECT_EQ(text_message("caf\xc3\xa9 \xf0\x9f\x90\x98"), "caf\xc3\xa9 \xf0\x9f\x90\x98");
  EXPECT_EQ(text_message("\xff\xc3("), "\\xff\\xc3(");
  EXPECT_EQ(text_message("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
  EXPECT_EQ(text_message("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a surrogate
  EXPECT_EQ(text_message("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
  EXPECT_EQ(text_message("\xe2\x82"), "\\xe2\\x82");                    // cut short
  EXPECT_EQ(text_message("\xc2\x9b"
                         "31m"),
            "\\u009b31m");  // C1 CSI
  EXPECT_EQ(text_message("a\xe2\x80\xa8"
                         "b\xe2\x80\xae"),
            "a\\u2028b\\u202e");
  const std::string json = line(LogFormat::Json, "\xff\xc3(caf\xc3\xa9\xc2\x9b");
  EXPECT_EQ(json_message(json), "\\xff\\xc3(caf\xc3\xa9\\u009b");
}

TEST(LogLineTest, LongMessagesAreCutAtACharacterBoundary) {
  std::string accents;
  for (int i = 0; i < 3000; ++i) accents += "\xc3\xa9";
  for (const std::string& msg : {accents, std::string(3000, '\x01'), std::string(5000, 'x')}) {
    const std::string t = line(LogFormat::Text, msg);
    EXPECT_LE(t.size(), kMaxLogLine);
    EXPECT_TRUE(t.ends_with("...(truncated)\n")) << t.substr(t.size() - 40);
    EXPECT_TRUE(valid_utf8(t));
    EXPECT_EQ(t.find('\n'), t.size() - 1);
    if (msg[0] == '\x01') {
      EXPECT_TRUE(t.ends_with("\\x01...(truncated)\n")) << t.substr(t.size() - 40);
    }
    simdjson::dom::element doc;
    const std::string j = line(LogFormat::Json, msg);
    EXPECT_LE(j.size(), kMaxLogLine);
    json_message(j, &doc);
    EXPECT_TRUE(doc["truncated"].get_bool().value()) << j.substr(j.size() - 40);
  }
  LogFields f = fields(LogLevel::Error, 255);
  f.repeated = ~0ull;
  f.interval_s = 1e6;
  f.dropped = ~0ull;
  const std::string j = line(LogFormat::Json, std::string(4000, '"'), f);
  EXPECT_LE(j.size(), kMaxLogLine);
  json_message(j);
}

TEST(LogLineTest, RandomBytesAlwaysMakeOneValidLine) {
  std::mt19937 rng(18);
  for (int round = 0; round < 2000; ++round) {
    std::string msg(rng() % 300, '\0');
    for (char& c : msg) c = static_cast<char>(rng() % 4 == 0 ? rng() % 0x20 : rng());
    const std::string t = line(LogFormat::Text, msg);
    EXPECT_EQ(t.find('\n'), t.size() - 1);
    EXPECT_TRUE(valid_utf8(t));
    for (const char c : t.substr(0, t.size() - 1)) {
      EXPECT_FALSE((c >= 0 && c < 0x20) || c == 0x7f) << t;
    }
    // JSON's msg is exactly the text line's message.
    EXPECT_EQ(json_message(line(LogFormat::Json, msg)), text_message(msg));
  }
}

}  // namespace
}  // namespace pgwarden::core
