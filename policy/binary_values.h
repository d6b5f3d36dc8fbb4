// The binary send formats of the values a masker must look into, as PostgreSQL writes them:
// integers, numeric (numeric_send), arrays (array_send) and records (record_send). A masker that
// cannot see inside a binary value cannot find what it holds; these let it walk nested values
// down to their scalars. Sans-I/O.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace pgwarden::policy {

// Binary int2/int4/int8 to decimal; false if the length does not fit the type.
bool binary_integer(std::string_view v, std::string& out);
// Binary numeric to its digits (sign and point included); false if malformed.
bool binary_numeric(std::string_view v, std::string& out);

namespace detail {
inline std::uint32_t be32(const char* p) {
  return (std::uint32_t(static_cast<unsigned char>(p[0])) << 24) |
         (std::uint32_t(static_cast<unsigned char>(p[1])) << 16) |
         (std::uint32_t(static_cast<unsigned char>(p[2])) << 8) |
         std::uint32_t(static_cast<unsigned char>(p[3]));
}
}  // namespace detail

// A binary array: int32 ndim (0..6), int32 flags (0 or 1), int32 element type, ndim x (int32
// size, int32 lower bound), then each element as int32 length (-1: NULL) and bytes. Calls
// f(element_type, bytes) for each non-NULL element. False (having called f for nothing) when `v`
// is not exactly such an array.
template <class F>
bool for_each_array_element(std::string_view v, F&& f) {
  if (v.size() < 12) return false;
  const std::uint32_t ndim = detail::be32(v.data());
  const std::uint32_t flags = detail::be32(v.data() + 4);
  const std::uint32_t elem = detail::be32(v.data() + 8);
  if (ndim > 6 || flags > 1 || v.size() < 12 + 8u * ndim) return false;
  std::uint64_t count = ndim == 0 ? 0 : 1;
  for (std::uint32_t d = 0; d < ndim; ++d) {
    count *= detail::be32(v.data() + 12 + 8 * d);
    if (count > v.size()) return false;  // every element takes at least 4 bytes
  }
  // Check the layout first, then report: a value that only looks like an array at the start
  // reports nothing.
  std::size_t pos = 12 + 8u * ndim;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (v.size() - pos < 4) return false;
    const auto len = static_cast<std::int32_t>(detail::be32(v.data() + pos));
    pos += 4;
    if (len < -1 || (len > 0 && v.size() - pos < static_cast<std::size_t>(len))) return false;
    if (len > 0) pos += static_cast<std::size_t>(len);
  }
  if (pos != v.size()) return false;
  pos = 12 + 8u * ndim;
  for (std::uint64_t i = 0; i < count; ++i) {
    const auto len = static_cast<std::int32_t>(detail::be32(v.data() + pos));
    pos += 4;
    if (len < 0) continue;
    f(elem, v.substr(pos, static_cast<std::size_t>(len)));
    pos += static_cast<std::size_t>(len);
  }
  return true;
}

// A binary record: int32 field count, then per field int32 type, int32 length (-1: NULL) and
// bytes. Same contract as for_each_array_element.
template <class F>
bool for_each_record_field(std::string_view v, F&& f) {
  if (v.size() < 4) return false;
  const std::uint32_t n = detail::be32(v.data());
  if (n > 1600 || n * 8ull > v.size()) return false;  // MaxTupleAttributeNumber
  std::size_t pos = 4;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (v.size() - pos < 8) return false;
    const auto len = static_cast<std::int32_t>(detail::be32(v.data() + pos + 4));
    pos += 8;
    if (len < -1 || (len > 0 && v.size() - pos < static_cast<std::size_t>(len))) return false;
    if (len > 0) pos += static_cast<std::size_t>(len);
  }
  if (pos != v.size()) return false;
  pos = 4;
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint32_t type = detail::be32(v.data() + pos);
    const auto len = static_cast<std::int32_t>(detail::be32(v.data() + pos + 4));
    pos += 8;
    if (len < 0) continue;
    f(type, v.substr(pos, static_cast<std::size_t>(len)));
    pos += static_cast<std::size_t>(len);
  }
  return true;
}

}  // namespace pgwarden::policy
