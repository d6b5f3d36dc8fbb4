#include "policy/auth_throttle.h"

#include <gtest/gtest.h>

namespace pgwarden::policy {
namespace {

TEST(AuthThrottleTest, BlocksAnAddressAfterTheLimitUntilTheWindowEnds) {
  AuthThrottle t(3, 60);
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(t.blocked("10.0.0.1", 1000 + i));
    t.record_failure("10.0.0.1", 1000 + i);
  }
  EXPECT_TRUE(t.blocked("10.0.0.1", 1010));
  EXPECT_FALSE(t.blocked("10.0.0.2", 1010));  // other addresses are unaffected
  EXPECT_TRUE(t.blocked("10.0.0.1", 1059));
  EXPECT_FALSE(t.blocked("10.0.0.1", 1060));  // a new window
}

TEST(AuthThrottleTest, FailuresSpreadOverWindowsDoNotAccumulate) {
  AuthThrottle t(3, 10);
  t.record_failure("a", 0);
  t.record_failure("a", 5);
  t.record_failure("a", 11);  // the first window ended: counting starts again
  EXPECT_FALSE(t.blocked("a", 12));
}

TEST(AuthThrottleTest, TableStaysBoundedByOneWindowOfAddresses) {
  AuthThrottle t(5, 10);
  for (int i = 0; i < 1000; ++i) t.record_failure("addr" + std::to_string(i), i / 100);
  EXPECT_EQ(t.tracked(), 1000u);
  EXPECT_FALSE(t.blocked("fresh", 100));  // sweeps everything older than a window
  EXPECT_EQ(t.tracked(), 0u);
}

TEST(AuthThrottleTest, ZeroDisables) {
  AuthThrottle t(0, 60);
  for (int i = 0; i < 100; ++i) t.record_failure("a", 1);
  EXPECT_FALSE(t.blocked("a", 1));
}

}  // namespace
}  // namespace pgwarden::policy
