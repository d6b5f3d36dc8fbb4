#include "core/metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace pgwarden::core {
namespace {

TEST(MetricsTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  Histogram h(kLatencyBounds);
  h.observe(10'000);          // 10 µs: the first bucket (25 µs)
  h.observe(1'000'000, 3);    // 1 ms, three times: le 0.001 includes its bound
  h.observe(60'000'000'000);  // a minute: past every bound, +Inf only
  EXPECT_EQ(h.count(), 5u);
  std::string out;
  h.render(out, "x_seconds", "core=\"1\"");
  EXPECT_NE(out.find("x_seconds_bucket{core=\"1\",le=\"2.5e-05\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{core=\"1\",le=\"0.0005\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{core=\"1\",le=\"0.001\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{core=\"1\",le=\"10\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{core=\"1\",le=\"+Inf\"} 5\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_sum{core=\"1\"} 60.00301\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_count{core=\"1\"} 5\n"), std::string::npos) << out;
  std::string bare;
  Histogram(kWaitBounds).render(bare, "w", "");
  EXPECT_NE(bare.find("w_bucket{le=\"1\"} 0\n"), std::string::npos) << bare;
  EXPECT_NE(bare.find("w_count 0\n"), std::string::npos) << bare;
}

}  // namespace
}  // namespace pgwarden::core
