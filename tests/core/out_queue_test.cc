#include "core/out_queue.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace pgwarden::core {
namespace {

// A real ring: the buffer ring is registered with the kernel as in production.
class OutQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(io_uring_queue_init(8, &ring_, 0), 0);
    buffers_ = std::make_unique<BufferRing>(&ring_, 8, 4096);
  }
  void TearDown() override {
    buffers_.reset();
    io_uring_queue_exit(&ring_);
  }
  io_uring ring_{};
  std::unique_ptr<BufferRing> buffers_;
};

std::string drain_text(const OutQueue& q) {
  iovec iov[16];
  const std::size_t n = q.fill(iov, 16);
  std::string out;
  for (std::size_t i = 0; i < n; ++i)
    out.append(static_cast<char*>(iov[i].iov_base), iov[i].iov_len);
  return out;
}

TEST_F(OutQueueTest, AdjacentRangesOfOneBufferCoalesce) {
  OutQueue q;
  std::byte* b = buffers_->data(0);
  std::memcpy(b, "hello world", 11);
  buffers_->ref(0);  // the receive's own reference
  q.push_buffer(b, 5, 0, *buffers_);
  q.push_buffer(b + 5, 6, 0, *buffers_);
  iovec iov[4];
  EXPECT_EQ(q.fill(iov, 4), 1u);
  EXPECT_EQ(q.bytes(), 11u);
  EXPECT_EQ(drain_text(q), "hello world");
  buffers_->unref(0);
  EXPECT_EQ(buffers_->in_use(), 1u);  // still referenced by the queue
  q.consume(11, *buffers_);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(buffers_->in_use(), 0u);
  EXPECT_EQ(buffers_->publish(), 1u);
}

TEST_F(OutQueueTest, PartialSendsKeepOrderAcrossCopiesAndBuffers) {
  OutQueue q;
  const std::string big(1000, 'B');  // large enough to be forwarded from its buffer
  std::memcpy(buffers_->data(1), big.data(), big.size());
  buffers_->ref(1);
  const std::string a = "AAA";
  q.push_copy({reinterpret_cast<const std::byte*>(a.data()), a.size()});
  q.push_buffer(buffers_->data(1), 1000, 1, *buffers_);
  buffers_->unref(1);
  EXPECT_EQ(buffers_->in_use(), 1u);
  q.consume(2, *buffers_);
  EXPECT_EQ(drain_text(q), "A" + big);
  q.consume(3, *buffers_);
  EXPECT_EQ(drain_text(q), big.substr(2));
  EXPECT_EQ(buffers_->in_use(), 1u);
  q.consume(998, *buffers_);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(buffers_->in_use(), 0u);
}

TEST_F(OutQueueTest, SmallChunksBehindWaitingBytesAreCopiedNotPinned) {
  OutQueue q;
  std::memcpy(buffers_->data(2), "first", 5);
  buffers_->ref(2);
  q.push_buffer(buffers_->data(2), 5, 2, *buffers_);
  buffers_->unref(2);
  EXPECT_EQ(q.footprint(), 4096u);  // a whole receive buffer is held for 5 bytes
  // Many tiny replies for a reader that is not reading: none of their buffers stay pinned.
  std::string expect = "first";
  for (std::uint16_t i = 0; i < 100; ++i) {
    const std::uint16_t bid = 3 + (i % 5);
    std::memcpy(buffers_->data(bid), "xy", 2);
    buffers_->ref(bid);
    q.push_buffer(buffers_->data(bid), 2, bid, *buffers_);
    buffers_->unref(bid);
    expect += "xy";
  }
  EXPECT_EQ(buffers_->in_use(), 1u);  // only the first chunk's buffer
  EXPECT_EQ(q.bytes(), expect.size());
  EXPECT_EQ(q.footprint(), 4096u + 4096u);  // plus one private 4 KiB copy buffer
  EXPECT_EQ(drain_text(q), expect);
  q.consume(expect.size(), *buffers_);
  EXPECT_EQ(q.footprint(), 0u);
  EXPECT_EQ(buffers_->in_use(), 0u);
}

TEST_F(OutQueueTest, GrowsWithoutMovingQueuedBytes) {
  OutQueue q;
  std::string expect;
  for (int i = 0; i < 100; ++i) {
    const std::string s = std::to_string(i) + ",";
    q.push_copy({reinterpret_cast<const std::byte*>(s.data()), s.size()});
    expect += s;
  }
  iovec iov[128];
  const std::size_t n = q.fill(iov, 128);
  EXPECT_EQ(n, 1u);  // small copies share one private buffer
  std::string got;
  for (std::size_t i = 0; i < n; ++i)
    got.append(static_cast<char*>(iov[i].iov_base), iov[i].iov_len);
  EXPECT_EQ(got, expect);
  q.clear(*buffers_);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
}

}  // namespace
}  // namespace pgwarden::core
