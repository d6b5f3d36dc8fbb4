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
  EXPECT_EQ(cancel_key_route(gw.pid)->core, 3u);
  EXPECT_EQ(cancel_key_route(gw.pid)->peer, 0u);
  EXPECT_FALSE(cancel_key_route(gw.pid)->forwarded);
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
    EXPECT_EQ(cancel_key_route(k.pid)->core, 255u);
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

TEST(CancelKeyTableTest, RouteDecodingRejectsForeignPids) {
  EXPECT_FALSE(cancel_key_route(0).has_value());
  EXPECT_FALSE(cancel_key_route(-5).has_value());
  EXPECT_FALSE(cancel_key_route(1).has_value());  // slot 0: never issued
}

// The instance id (--peer-id) rides in the pid, so any instance can send a CancelRequest to the
// one that issued the key; a peer marks what it forwards, and the mark is never issued.
TEST(CancelKeyTableTest, PeerIdAndForwardMarkRoundTrip) {
  for (const std::uint32_t peer : {1u, 7u, kMaxCancelPeer}) {
    CancelKeyTable t(kMaxCancelCores - 1, peer);
    const BackendKey up{99, 98};
    const BackendKey gw = t.issue(up, 1234);
    ASSERT_GT(gw.pid, 0);
    const auto r = cancel_key_route(gw.pid);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->peer, peer);
    EXPECT_EQ(r->core, kMaxCancelCores - 1);
    EXPECT_FALSE(r->forwarded);

    const std::int32_t marked = cancel_key_mark_forwarded(gw.pid);
    ASSERT_GT(marked, 0);
    const auto fr = cancel_key_route(marked);
    ASSERT_TRUE(fr.has_value());
    EXPECT_EQ(fr->peer, peer);
    EXPECT_EQ(fr->core, kMaxCancelCores - 1);
    EXPECT_TRUE(fr->forwarded);
    // The table answers the key only as it issued it.
    EXPECT_FALSE(t.lookup({marked, gw.secret}).has_value());
    EXPECT_EQ(cancel_key_unmark_forwarded(marked), gw.pid);
    EXPECT_EQ(t.lookup({cancel_key_unmark_forwarded(marked), gw.secret}), up);

    // Another instance's table with the same core does not know the key.
    CancelKeyTable other(kMaxCancelCores - 1, peer == 1 ? 2 : 1);
    EXPECT_FALSE(other.lookup(gw).has_value());
  }
}

TEST(CancelKeyTableTest, SlotSpaceEndsWithUncancellableSessionsNotCollisions) {
  CancelKeyTable t(0, 3);
  std::set<std::int32_t> pids;
  const std::uint32_t slots = (1u << kCancelSlotBits) - 1;
  for (std::uint32_t i = 0; i < slots; ++i) {
    const BackendKey k = t.issue({1, 1}, 5);
    ASSERT_NE(k.pid, 0);
    ASSERT_EQ(cancel_key_route(k.pid)->peer, 3u);
    pids.insert(k.pid);
  }
  EXPECT_EQ(pids.size(), slots);
  EXPECT_EQ(t.issue({1, 1}, 5).pid, 0);  // full: this session cannot be cancelled through us
}

}  // namespace
}  // namespace pgwarden::protocol
