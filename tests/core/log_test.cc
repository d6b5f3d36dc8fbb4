#include "core/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <simdjson.h>

#include <chrono>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace pgwarden::core {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Each test logs into a pipe of its own; the writer goes back to stderr afterwards.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::pipe2(fds_, O_CLOEXEC), 0);
    set_log_rate_limit(0);
  }
  void TearDown() override {
    stop_log_writer(0.5);
    start_log_writer(STDERR_FILENO);  // later direct writes go to stderr again
    stop_log_writer();
    set_log_format(LogFormat::Text);
    set_log_rate_limit(20);
    set_log_core(-1);
    if (reader_.joinable()) {
      ::close(fds_[1]);
      fds_[1] = -1;
      reader_.join();
    }
    for (const int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }

  // Fills the pipe so that nothing more can be written until someone reads.
  void fill_pipe() {
    const int flags = ::fcntl(fds_[1], F_GETFL);
    ::fcntl(fds_[1], F_SETFL, flags | O_NONBLOCK);
    const std::string block(4096, 'f');
    while (::write(fds_[1], block.data(), block.size()) > 0) {
    }
    ::fcntl(fds_[1], F_SETFL, flags);
  }

  // Reads the pipe to its end (the write side closed in TearDown or by close_and_read()).
  void start_reading() {
    reader_ = std::thread([this] {
      char buf[65536];
      ssize_t n;
      while ((n = ::read(fds_[0], buf, sizeof buf)) > 0) read_.append(buf, n);
    });
  }
  std::string close_and_read() {
    stop_log_writer(5);
    ::close(fds_[1]);
    fds_[1] = -1;
    reader_.join();
    return read_;
  }

  static std::vector<std::string> lines_with(const std::string& all, const std::string& part) {
    std::vector<std::string> out;
    std::istringstream in(all);
    for (std::string l; std::getline(in, l);) {
      if (l.find(part) != std::string::npos) out.push_back(l);
    }
    return out;
  }

  int fds_[2] = {-1, -1};
  std::thread reader_;
  std::string read_;
};

TEST_F(LogTest, QueuedLinesReachTheFileInOrder) {
  start_log_writer(fds_[1]);
  start_reading();
  for (int i = 0; i < 500; ++i) PGW_INFO("line %d of the test", i);
  EXPECT_TRUE(flush_log(5));
  const auto lines = lines_with(close_and_read(), "of the test");
  ASSERT_EQ(lines.size(), 500u);
  for (int i = 0; i < 500; ++i) {
    EXPECT_TRUE(lines[i].ends_with(" INFO line " + std::to_string(i) + " of the test")) << lines[i];
  }
}

TEST_F(LogTest, JsonLinesCarryTheCoreAndEscapedClientText) {
  set_log_format(LogFormat::Json);
  start_log_writer(fds_[1]);
  start_reading();
  set_log_core(2);
  PGW_WARN("refused \"%s\"", "bob\n{\"level\":\"error\"}\x1b[2J");
  set_log_core(-1);
  PGW_ERROR("from another thread");
  const std::string all = close_and_read();
  std::istringstream in(all);
  simdjson::dom::parser parser;
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 2u) << all;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(lines[0]).get(doc), simdjson::SUCCESS) << lines[0];
  EXPECT_EQ(std::string_view(doc["level"]), "warn");
  EXPECT_EQ(int64_t(doc["core"]), 2);
  EXPECT_EQ(std::string_view(doc["msg"]), "refused \"bob\\n{\"level\":\"error\"}\\x1b[2J\"");
  ASSERT_EQ(parser.parse(lines[1]).get(doc), simdjson::SUCCESS) << lines[1];
  EXPECT_EQ(doc["core"].error(), simdjson::NO_SUCH_FIELD);
}

TEST_F(LogTest, AFullStderrNeverBlocksACallerAndDropsAreCounted) {
  fill_pipe();
  start_log_writer(fds_[1]);
  const std::uint64_t dropped_before = log_lines_dropped();
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 10000; ++i) {
        PGW_WARN("thread %d: a line long enough to fill the queue soon, number %d", t, i);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LT(seconds_since(t0), 3.0);  // 40000 lines; typically well under 100 ms
  const std::uint64_t dropped = log_lines_dropped() - dropped_before;
  EXPECT_GT(dropped, 10000u);  // 1 MiB holds about 13000 of them
  EXPECT_LT(dropped, 40000u);
  // Once stderr is read again, what was queued arrives, and so does the count of what was not.
  start_reading();
  EXPECT_TRUE(flush_log(20));
  const std::string all = close_and_read();
  std::uint64_t reported = 0;
  const std::regex notice(R"(WARN (\d+) log lines dropped \(stderr too slow\)$)");
  for (const std::string& l : lines_with(all, "log lines dropped")) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(l, m, notice)) << l;
    reported += std::stoull(m[1]);
  }
  EXPECT_EQ(reported, dropped);
  EXPECT_EQ(lines_with(all, "number ").size() + dropped, 40000u);
}

TEST_F(LogTest, StopIsBoundedWhenStderrIsStuck) {
  fill_pipe();
  start_log_writer(fds_[1]);
  const std::uint64_t dropped_before = log_lines_dropped();
  for (int i = 0; i < 10; ++i) PGW_INFO("never read %d", i);
  const auto t0 = Clock::now();
  EXPECT_FALSE(flush_log(0.2));
  stop_log_writer(0.3);
  EXPECT_LT(seconds_since(t0), 2.0);
  EXPECT_EQ(log_lines_dropped() - dropped_before, 10u);
  // After the writer stopped, a line is written directly, waiting at most a second.
  const auto t1 = Clock::now();
  PGW_INFO("after the stop");
  EXPECT_LT(seconds_since(t1), 2.0);
  EXPECT_EQ(log_lines_dropped() - dropped_before, 11u);
}

TEST_F(LogTest, WithoutTheWriterLinesAreWrittenDirectly) {
  start_log_writer(fds_[1]);
  stop_log_writer();
  PGW_INFO("written directly");
  PGW_DEBUG("below the level");
  start_reading();
  const std::string all = close_and_read();
  EXPECT_EQ(lines_with(all, "written directly").size(), 1u) << all;
  EXPECT_TRUE(lines_with(all, "below the level").empty());
}

TEST_F(LogTest, AFloodFromOneSiteIsSummarisedAndOthersGetThrough) {
  set_log_rate_limit(5);
  start_log_writer(fds_[1]);
  start_reading();
  for (int i = 0; i < 100; ++i) {
    PGW_WARN("session: authentication failed from 10.0.0.%d", i);
    if (i == 50) PGW_INFO("admin endpoint on somewhere");
  }
  // The logger thread writes the summary once the second is over, without another line.
  std::this_thread::sleep_for(std::chrono::milliseconds(1400));
  EXPECT_TRUE(flush_log(5));
  const std::string all = close_and_read();
  const auto flood = lines_with(all, "authentication failed");
  ASSERT_EQ(flood.size(), 6u) << all;
  EXPECT_TRUE(flood[4].ends_with("from 10.0.0.4")) << flood[4];
  EXPECT_NE(flood[5].find("WARN session: authentication failed from 10.0.0.99 (repeated 95 times "
                          "in the last 1."),
            std::string::npos)
      << flood[5];
  EXPECT_EQ(lines_with(all, "admin endpoint on somewhere").size(), 1u);
  EXPECT_GE(log_lines_suppressed(), 95u);
}

TEST(LogDeathTest, CheckFailedWritesALineAndAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(PGW_CHECK(1 + 1 == 3), R"(ERROR pgwarden: check failed: 1 \+ 1 == 3 at .*log_test)");
}

}  // namespace
}  // namespace pgwarden::core
