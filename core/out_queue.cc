#include "core/out_queue.h"

#include <cstring>

namespace pgwarden::core {

OutQueue::Entry& OutQueue::push_slot() {
  if (count_ == slots_.size()) {
    std::vector<Entry> grown(slots_.empty() ? 8 : slots_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) grown[i] = std::move(at(i));
    slots_ = std::move(grown);
    head_ = 0;
  }
  ++count_;
  return at(count_ - 1);
}

namespace {
constexpr std::uint32_t kMinCopyCapacity = 4096;
}

void OutQueue::push_buffer(const std::byte* p, std::uint32_t len, std::uint16_t bid,
                           BufferRing& br) {
  if (len == 0) return;
  if (count_ != 0) {
    Entry& last = at(count_ - 1);
    if (last.bid == bid && last.p + last.len == p) {
      last.len += len;
      bytes_ += len;
      return;
    }
    if (len <= br.buffer_size() / 8) {
      push_copy({p, len});
      return;
    }
  }
  bytes_ += len;
  footprint_ += br.buffer_size();
  Entry& e = push_slot();
  e.p = p;
  e.len = len;
  e.bid = bid;
  br.ref(bid);
}

void OutQueue::push_copy(protocol::Bytes bytes) {
  if (bytes.empty()) return;
  const auto len = static_cast<std::uint32_t>(bytes.size());
  bytes_ += len;
  if (count_ != 0) {
    // Appending after bytes already handed to the kernel is safe: a send reads only the range
    // it was given, and the private buffer never moves.
    Entry& last = at(count_ - 1);
    if (last.bid < 0 &&
        last.cap - static_cast<std::uint32_t>(last.p - last.owned.get()) - last.len >= len) {
      std::memcpy(const_cast<std::byte*>(last.p) + last.len, bytes.data(), len);
      last.len += len;
      return;
    }
  }
  Entry& e = push_slot();
  e.cap = len > kMinCopyCapacity ? len : kMinCopyCapacity;
  e.owned = std::make_unique<std::byte[]>(e.cap);
  std::memcpy(e.owned.get(), bytes.data(), len);
  e.p = e.owned.get();
  e.len = len;
  e.bid = -1;
  footprint_ += e.cap;
}

std::size_t OutQueue::fill(iovec* iov, std::size_t max) const noexcept {
  const std::size_t n = count_ < max ? count_ : max;
  for (std::size_t i = 0; i < n; ++i) {
    const Entry& e = at(i);
    iov[i].iov_base = const_cast<std::byte*>(e.p);
    iov[i].iov_len = e.len;
  }
  return n;
}

void OutQueue::pop_front(BufferRing& br) noexcept {
  Entry& e = at(0);
  if (e.bid >= 0) {
    br.unref(static_cast<std::uint16_t>(e.bid));
    footprint_ -= br.buffer_size();
  } else {
    footprint_ -= e.cap;
  }
  e = Entry{};
  head_ = (head_ + 1) & (slots_.size() - 1);
  --count_;
}

void OutQueue::consume(std::size_t n, BufferRing& br) noexcept {
  bytes_ -= n;
  while (n != 0 && count_ != 0) {
    Entry& e = at(0);
    if (n < e.len) {
      e.p += n;
      e.len -= static_cast<std::uint32_t>(n);
      return;
    }
    n -= e.len;
    pop_front(br);
  }
}

void OutQueue::clear(BufferRing& br) noexcept {
  while (count_ != 0) pop_front(br);
  bytes_ = 0;
  footprint_ = 0;
}

}  // namespace pgwarden::core
