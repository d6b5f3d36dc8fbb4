#include "core/log_limiter.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace pgwarden::core {
namespace {

constexpr std::int64_t kMs = 1'000'000;
const char kSiteA[] = "session: authentication failed for \"%s\" from %s: %s";
const char kSiteB[] = "admin endpoint on %s";

struct Flood {
  std::unique_ptr<LogLimiter> limiter = std::make_unique<LogLimiter>(20);
  std::vector<LogLimiter::Summary> summaries;
  bool admit(const void* site, std::int64_t at, std::string_view msg = "m") {
    LogLimiter::Summary s;
    bool has = false;
    const bool ok = limiter->admit(site, at, LogLevel::Warn, 1, msg, s, has);
    if (has) summaries.push_back(s);
    return ok;
  }
  void sweep(std::int64_t at) {
    limiter->sweep(at, [&](const LogLimiter::Summary& s) { summaries.push_back(s); });
  }
};

TEST(LogLimiterTest, AFloodFromOneSiteIsBoundedAndCounted) {
  Flood r;
  int written = 0;
  for (int i = 0; i < 1000; ++i) {
    written += r.admit(kSiteA, i * kMs / 2, "attempt " + std::to_string(i));
  }
  EXPECT_EQ(written, 20);
  r.sweep(900 * kMs);  // the window is not over yet
  EXPECT_TRUE(r.summaries.empty());
  r.sweep(1100 * kMs);
  ASSERT_EQ(r.summaries.size(), 1u);
  EXPECT_EQ(r.summaries[0].repeated, 980u);
  EXPECT_EQ(r.summaries[0].message(), "attempt 999");  // the last one
  EXPECT_EQ(r.summaries[0].level, LogLevel::Warn);
  EXPECT_EQ(r.summaries[0].core, 1);
  EXPECT_NEAR(r.summaries[0].interval_s, 1.1, 1e-9);
  EXPECT_EQ(r.limiter->suppressed_total(), 980u);
  r.sweep(5000 * kMs);  // said once
  EXPECT_EQ(r.summaries.size(), 1u);
  // A new window lets lines through again.
  EXPECT_TRUE(r.admit(kSiteA, 5000 * kMs));
}

TEST(LogLimiterTest, AtExitOpenWindowsAreSummarisedToo) {
  Flood r;
  for (int i = 0; i < 30; ++i) r.admit(kSiteA, i * kMs);
  for (int i = 0; i < 5; ++i) r.admit(kSiteB, i * kMs);
  r.limiter->sweep(
      100 * kMs, [&](const LogLimiter::Summary& s) { r.summaries.push_back(s); }, true);
  ASSERT_EQ(r.summaries.size(), 1u);  // B suppressed nothing
  EXPECT_EQ(r.summaries[0].repeated, 10u);
}

TEST(LogLimiterTest, AnotherSiteIsUnaffected) {
  Flood r;
  for (int i = 0; i < 100; ++i) r.admit(kSiteA, i * kMs);
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(r.admit(kSiteB, 50 * kMs + i));
  EXPECT_FALSE(r.admit(kSiteA, 99 * kMs));
}

TEST(LogLimiterTest, TheNextLineAfterTheWindowBringsItsSummaryFirst) {
  Flood r;
  for (int i = 0; i < 25; ++i) r.admit(kSiteA, i * kMs);
  EXPECT_TRUE(r.summaries.empty());
  EXPECT_TRUE(r.admit(kSiteA, 1500 * kMs));
  ASSERT_EQ(r.summaries.size(), 1u);
  EXPECT_EQ(r.summaries[0].repeated, 5u);
  r.sweep(10'000 * kMs);
  EXPECT_EQ(r.summaries.size(), 1u);
}

TEST(LogLimiterTest, SteadyTrafficBelowTheLimitIsNeverSuppressed) {
  Flood r;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(r.admit(kSiteA, i * 100 * kMs));  // 10 a second
  r.sweep(200'000 * kMs);
  EXPECT_TRUE(r.summaries.empty());
}

TEST(LogLimiterTest, ZeroMeansNoLimitAndLongMessagesAreKeptWhole) {
  Flood r;
  r.limiter->set_per_second(0);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(r.admit(kSiteA, 0));
  r.limiter->set_per_second(1);
  std::string accents;
  for (int i = 0; i < 200; ++i) accents += "\xc3\xa9";
  r.admit(kSiteB, 0);
  EXPECT_FALSE(r.admit(kSiteB, 1, accents));
  r.sweep(2000 * kMs);
  ASSERT_EQ(r.summaries.size(), 1u);
  EXPECT_LE(r.summaries[0].length, LogLimiter::kKeptText);
  EXPECT_EQ(r.summaries[0].length % 2, 0u);  // no half of a two-byte character
}

TEST(LogLimiterTest, SitesBeyondTheTableAreNotLimited) {
  Flood r;
  std::vector<char> sites(LogLimiter::kSites + 10);
  for (char& site : sites) {
    for (int i = 0; i < 20; ++i) r.admit(&site, 0);
  }
  int admitted = 0;
  for (char& site : sites) admitted += r.admit(&site, 1);
  EXPECT_EQ(admitted, 10);  // only the ones without a slot
}

}  // namespace
}  // namespace pgwarden::core
