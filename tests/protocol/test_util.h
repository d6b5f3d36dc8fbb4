// Helpers shared by the protocol tests: byte strings and reading recorded conversations.
#pragma once

#include <cstddef>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/framer.h"

namespace pgwarden::protocol::testing {

using ByteString = std::basic_string<std::byte>;

inline ByteString bytes(std::string_view s) {
  return ByteString(reinterpret_cast<const std::byte*>(s.data()), s.size());
}

inline ByteString u32(std::uint32_t v) {
  return ByteString{std::byte(v >> 24), std::byte(v >> 16), std::byte(v >> 8), std::byte(v)};
}

// A typed message: type byte, length, body.
inline ByteString msg(char type, std::string_view body) {
  return ByteString{std::byte(type)} + u32(static_cast<std::uint32_t>(body.size() + 4)) +
         bytes(body);
}

inline ByteString read_file(const std::string& name) {
  std::ifstream in(std::string(PGW_TEST_DATA) + "/" + name, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes(s);
}

}  // namespace pgwarden::protocol::testing
