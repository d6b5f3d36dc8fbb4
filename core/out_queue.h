// Bytes queued for one socket, in order: ranges of receive buffers (forwarded without a copy)
// and the few messages pgwarden writes itself. One sendmsg drains many entries at once.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/buffer_ring.h"
#include "protocol/framer.h"

namespace pgwarden::core {

class OutQueue {
 public:
  // Queues [p, p+len) of receive buffer `bid`, taking a reference; extends the last entry when
  // the range continues it, so a forwarded chunk costs one iovec however many messages it holds.
  // A small range queued behind bytes still waiting to be sent is copied instead, so a slow
  // reader cannot pin a whole receive buffer per few bytes and drain the core's buffer ring.
  void push_buffer(const std::byte* p, std::uint32_t len, std::uint16_t bid, BufferRing& br);
  // Queues a private copy of `bytes` (appended to the last private entry when it has room).
  void push_copy(protocol::Bytes bytes);

  // Fills up to `max` iovecs from the front; returns how many.
  std::size_t fill(iovec* iov, std::size_t max) const noexcept;
  // Drops `n` sent bytes from the front, releasing buffers that are fully sent.
  void consume(std::size_t n, BufferRing& br) noexcept;
  // Drops everything (the socket is gone); only when no send is in flight.
  void clear(BufferRing& br) noexcept;

  bool empty() const noexcept { return count_ == 0; }
  std::uint64_t bytes() const noexcept { return bytes_; }
  // Memory the queue holds: whole receive buffers it references plus its private copies. This,
  // not bytes(), is what backpressure bounds.
  std::uint64_t footprint() const noexcept { return footprint_; }

 private:
  struct Entry {
    const std::byte* p = nullptr;
    std::uint32_t len = 0;
    std::int32_t bid = -1;               // receive buffer, or -1 for an owned copy
    std::uint32_t cap = 0;               // capacity of `owned`
    std::unique_ptr<std::byte[]> owned;  // heap bytes stay put when the queue grows
  };
  Entry& push_slot();
  Entry& at(std::size_t i) noexcept { return slots_[(head_ + i) & (slots_.size() - 1)]; }
  const Entry& at(std::size_t i) const noexcept {
    return slots_[(head_ + i) & (slots_.size() - 1)];
  }
  void pop_front(BufferRing& br) noexcept;

  std::vector<Entry> slots_;  // circular, power-of-two capacity
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t footprint_ = 0;
};

}  // namespace pgwarden::core
