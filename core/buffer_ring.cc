#include "core/buffer_ring.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace pgwarden::core {

BufferRing::BufferRing(io_uring* ring, unsigned count, unsigned size)
    : ring_(ring), count_(count), size_(size), refs_(count, 0) {
  ring_bytes_ = count * sizeof(io_uring_buf);
  void* r =
      ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (r == MAP_FAILED) throw std::runtime_error("mmap for the buffer ring failed");
  br_ = static_cast<io_uring_buf_ring*>(r);
  mem_ = static_cast<std::byte*>(std::aligned_alloc(4096, std::size_t(count) * size));
  if (mem_ == nullptr) throw std::runtime_error("cannot allocate receive buffers");
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
  reg.ring_entries = count;
  reg.bgid = kGroup;
  if (const int rc = io_uring_register_buf_ring(ring_, &reg, 0); rc != 0) {
    throw std::runtime_error(
        std::string("kernel refused a provided buffer ring (needs Linux 5.19+): ") +
        std::strerror(-rc));
  }
  io_uring_buf_ring_init(br_);
  for (unsigned i = 0; i < count; ++i) {
    io_uring_buf_ring_add(br_, data(static_cast<std::uint16_t>(i)), size_,
                          static_cast<unsigned short>(i), io_uring_buf_ring_mask(count_),
                          static_cast<int>(i));
  }
  io_uring_buf_ring_advance(br_, static_cast<int>(count));
}

BufferRing::~BufferRing() {
  io_uring_unregister_buf_ring(ring_, kGroup);
  ::munmap(br_, ring_bytes_);
  std::free(mem_);
}

void BufferRing::recycle(std::uint16_t bid) noexcept {
  io_uring_buf_ring_add(br_, data(bid), size_, bid, io_uring_buf_ring_mask(count_),
                        static_cast<int>(pending_));
  ++pending_;
  --in_use_;
}

unsigned BufferRing::publish() noexcept {
  const unsigned n = pending_;
  if (n != 0) {
    io_uring_buf_ring_advance(br_, static_cast<int>(n));
    pending_ = 0;
  }
  return n;
}

}  // namespace pgwarden::core
