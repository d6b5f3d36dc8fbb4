// io_uring user_data of the worker's submissions: a pointer to the owning context (16-byte
// aligned) | the operation kind in the low 4 bits.
#pragma once

#include <cstdint>

namespace pgwarden::core {

enum Op : std::uint64_t {
  kIgnore = 0,
  kAccept,
  kTick,
  kWake,
  kClientRecv,
  kClientSend,
  kUpstreamRecv,
  kUpstreamSend,
  kConnect,
  kCancelConnect,
  kCancelSend,
  kCancelWait,
  kRecordWrite,
  kRecordSync,
  kRecordTimer,
};
inline constexpr std::uint64_t kOpMask = 15;

inline std::uint64_t tag(const void* p, Op op) noexcept {
  return reinterpret_cast<std::uintptr_t>(p) | op;
}
template <class T>
T* ptr_of(std::uint64_t ud) noexcept {
  return reinterpret_cast<T*>(ud & ~kOpMask);
}

}  // namespace pgwarden::core
