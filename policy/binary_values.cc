#include "policy/binary_values.h"

#include <cstdio>

namespace pgwarden::policy {

// Binary int2/int4/int8 to decimal; false if the length does not fit the type.
bool binary_integer(std::string_view v, std::string& out) {
  if (v.size() != 2 && v.size() != 4 && v.size() != 8) return false;
  std::uint64_t u = 0;
  for (const char c : v) u = (u << 8) | static_cast<unsigned char>(c);
  const int shift = 64 - static_cast<int>(v.size()) * 8;
  const std::int64_t s =
      shift == 0 ? static_cast<std::int64_t>(u) : static_cast<std::int64_t>(u << shift) >> shift;
  out = std::to_string(s);
  return true;
}

// Binary numeric (ndigits, weight, sign, dscale, base-10000 digits) to its digits (and sign and
// point), enough for the detectors to see what a text client would. False if malformed.
bool binary_numeric(std::string_view v, std::string& out) {
  if (v.size() < 8) return false;
  auto u16 = [&](std::size_t at) {
    return static_cast<std::uint16_t>((static_cast<unsigned char>(v[at]) << 8) |
                                      static_cast<unsigned char>(v[at + 1]));
  };
  const std::size_t ndigits = u16(0);
  const auto weight = static_cast<std::int16_t>(u16(2));
  const std::uint16_t sign = u16(4);
  if (v.size() != 8 + 2 * ndigits) return false;
  out.clear();
  if (sign == 0x4000) out += '-';
  if (sign == 0xC000) {
    out = "NaN";
    return true;
  }
  for (std::size_t i = 0; i < ndigits; ++i) {
    if (static_cast<int>(i) == weight + 1) out += '.';
    const std::uint16_t d = u16(8 + 2 * i);
    if (d > 9999) return false;
    char buf[5];
    std::snprintf(buf, sizeof buf, "%04u", unsigned{d});
    out += i == 0 ? std::to_string(d) : std::string(buf);
  }
  for (int i = static_cast<int>(ndigits); i <= weight; ++i) out += "0000";
  return true;
}

}  // namespace pgwarden::policy
