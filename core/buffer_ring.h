// A core's provided-buffer ring for multishot receives. The kernel picks a buffer per receive, so
// an idle connection holds none. A buffer stays out of the ring while any queued send still
// points into it (reference count), then goes back. Owned by one worker; not thread-safe.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pgwarden::core {

class BufferRing {
 public:
  static constexpr std::uint16_t kGroup = 0;

  // Registers `count` (a power of two) buffers of `size` bytes with `ring`. Throws on failure.
  BufferRing(io_uring* ring, unsigned count, unsigned size);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  std::byte* data(std::uint16_t bid) noexcept { return mem_ + std::size_t(bid) * size_; }
  unsigned buffer_size() const noexcept { return size_; }

  // The first reference is taken when a receive completes into the buffer.
  void ref(std::uint16_t bid) noexcept {
    if (refs_[bid]++ == 0) ++in_use_;
  }
  // Drops a reference; at zero the buffer is queued for return to the kernel.
  void unref(std::uint16_t bid) noexcept {
    if (--refs_[bid] == 0) recycle(bid);
  }
  // Hands recycled buffers back to the kernel; returns how many. Call once per loop iteration.
  unsigned publish() noexcept;
  unsigned in_use() const noexcept { return in_use_; }

 private:
  void recycle(std::uint16_t bid) noexcept;

  io_uring* ring_;
  io_uring_buf_ring* br_ = nullptr;
  std::byte* mem_ = nullptr;
  std::size_t ring_bytes_ = 0;
  unsigned count_;
  unsigned size_;
  unsigned pending_ = 0;
  unsigned in_use_ = 0;
  std::vector<std::uint16_t> refs_;
};

}  // namespace pgwarden::core
