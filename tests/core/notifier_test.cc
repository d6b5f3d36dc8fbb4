// Webhook signatures (RFC 4231's HMAC-SHA256 vectors) and a notifier that never blocks its
// caller, whatever the receiver does.
#include "core/notifier.h"

#include <gtest/gtest.h>

#include <chrono>

namespace pgwarden::core {
namespace {

TEST(Notifier, SignaturesAreHmacSha256InHex) {
  EXPECT_EQ(Notifier::signature("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(Notifier::signature(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

// A receiver that does not exist: notify() returns at once, and a full queue drops its oldest.
TEST(Notifier, NotifyNeverBlocksAndTheQueueIsBounded) {
  NotifierOptions o;
  o.urls = {"http://127.0.0.1:9/unreachable"};
  o.secret = std::string(32, 'k');
  o.attempts = 2;
  o.first_backoff_s = 5;
  o.max_queue = 3;
  const auto t0 = std::chrono::steady_clock::now();
  {
    Notifier n(o);
    for (int i = 0; i < 10; ++i)
      n.notify("approval.requested", "{\"n\":" + std::to_string(i) + "}");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(200));
    EXPECT_GE(n.failed(), 6u);  // at most 3 queued + 1 in flight of 10
  }                             // the destructor ends a backoff wait at once
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

}  // namespace
}  // namespace pgwarden::core
