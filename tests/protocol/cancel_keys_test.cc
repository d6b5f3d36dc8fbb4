#include "protocol/cancel_keys.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace pgwarden::protocol {
namespace {

TEST(CancelKeyTableTest, IssuedKeyMapsToUpstreamKey) {
  CancelKeyTable t(3);
  const BackendKey up{4711, 0x1234};
  const BackendKey gw = t.issue(up, 0x5eed);
  EXPECT_GT(gw.pid, 0);
  EXPECT_EQ(gw.secret, 0x5eed);
  EXPECT_NE(gw.pid, up.pid);
  EXPECT_EQ(cancel_key_core(gw.pid), 3u);
  EXPECT_EQ(t.lookup(gw), up);
}

TEST(CancelKeyTableTest, WrongSecretUnknownPidAndOtherCoreAreIgnored) {
  CancelKeyTable t(1);
  const BackendKey gw = t.issue({10, 20}, 30);
  EXPECT_FALSE(t.lookup({gw.pid, 31}).has_value());
  EXPECT_FALSE(t.lookup({gw.pid + 2, 30}).has_value());
  EXPECT_FALSE(t.lookup({0, 30}).has_value());
  EXPECT_FALSE(t.lookup({-1, 30}).has_value());
  EXPECT_FALSE(t.lookup({10, 20}).has_value());  // the real upstream key means nothing here
  CancelKeyTable other(2);
  EXPECT_FALSE(other.lookup(gw).has_value());
}

TEST(CancelKeyTableTest, ReleasedKeysStopWorkingAndSlotsAreReused) {
  CancelKeyTable t(0);
  const BackendKey a = t.issue({1, 1}, 111);
  t.release(a);
  EXPECT_FALSE(t.lookup(a).has_value());
  EXPECT_EQ(t.live(), 0u);
  const BackendKey b = t.issue({2, 2}, 222);
  EXPECT_EQ(b.pid, a.pid);                // slot reused...
  EXPECT_FALSE(t.lookup(a).has_value());  // ...but the stale key's secret no longer matches
  EXPECT_EQ(t.lookup(b), (BackendKey{2, 2}));
  t.release({b.pid, 1});  // a release with the wrong secret does nothing
  EXPECT_EQ(t.lookup(b), (BackendKey{2, 2}));
}

TEST(CancelKeyTableTest, ManySessionsGetDistinctPids) {
  CancelKeyTable t(255);
  std::set<std::int32_t> pids;
  for (int i = 0; i < 10000; ++i) {
    const BackendKey k = t.issue({i, i}, i * 7);
    EXPECT_GT(k.pid, 0);
    EXPECT_EQ(cancel_key_core(k.pid), 255u);
    pids.insert(k.pid);
  }
  EXPECT_EQ(pids.size(), 10000u);
  EXPECT_EQ(t.live(), 10000u);
}

TEST(CancelKeyTableTest, RandomKeysDoNotHit) {
  CancelKeyTable t(0);
  for (int i = 0; i < 100; ++i) t.issue({i, i}, static_cast<std::int32_t>(0x9e3779b9u * (i + 1)));
  std::mt19937 rng(7);
  int hits = 0;
  for (int i = 0; i < 100000; ++i) {
    const BackendKey guess{static_cast<std::int32_t>(rng()), static_cast<std::int32_t>(rng())};
    hits += t.lookup(guess).has_value();
  }
  EXPECT_EQ(hits, 0);
}

TEST(CancelKeyTableTest, CoreDecodingRejectsForeignPids) {
  EXPECT_FALSE(cancel_key_core(0).has_value());
  EXPECT_FALSE(cancel_key_core(-5).has_value());
  EXPECT_FALSE(cancel_key_core(4242).has_value());  // even: never issued
}

}  // namespace
}  // namespace pgwarden::protocol
