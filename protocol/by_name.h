// A map keyed by a statement's, portal's or other object's name, found by string_view without
// building a string: the per-message lookups of the pipeline model and the stages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pgwarden::protocol {

// A hash of a name or text, 8 bytes a step (std::hash reads one at a time, out of line), for
// the maps of names and the caches of texts and shapes. Not keyed: a map whose keys a client
// chooses bounds their number (see PipelineModel's limits), as with std::hash.
inline std::size_t text_hash(std::string_view s) noexcept {
  constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ull;
  const auto mix = [](std::uint64_t x) {
    const unsigned __int128 m = static_cast<unsigned __int128>(x) * kMul;
    return static_cast<std::uint64_t>(m) ^ static_cast<std::uint64_t>(m >> 64);
  };
  const auto load = [&s](std::size_t at, std::size_t n) {
    std::uint64_t w = 0;
    std::memcpy(&w, s.data() + at, n);  // n is 4 or 8: no call
    return w;
  };
  const std::size_t n = s.size();
  std::uint64_t h = (n + 1) * 0xD6E8FEB86659FD93ull;  // the length, not cancelled by a tail's bytes
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) h = mix(h ^ load(i, 8));
  // The last bytes, by loads that may overlap bytes already read (the length is in h).
  std::uint64_t tail = 0;
  if (i == n) {
  } else if (n >= 8) {
    tail = load(n - 8, 8);
  } else if (n >= 4) {
    tail = load(0, 4) | load(n - 4, 4) << 32;
  } else {
    const auto byte = [&s](std::size_t at) {
      return std::uint64_t{static_cast<unsigned char>(s[at])};
    };
    tail = byte(0) | byte(n / 2) << 8 | byte(n - 1) << 16;
  }
  return static_cast<std::size_t>(mix(h ^ tail));
}

struct NameHash {
  using is_transparent = void;
  // The unnamed statement and portal, named by nearly every message, are not hashed.
  std::size_t operator()(std::string_view s) const noexcept { return s.empty() ? 0 : text_hash(s); }
};

template <class T>
using ByName = std::unordered_map<std::string, T, NameHash, std::equal_to<>>;

// PostgreSQL keys prepared statements and portals by their first NAMEDATALEN-1 bytes: two names
// that share those are one object upstream, and every map of names keys them so.
inline std::string_view name_key(std::string_view name) noexcept {
  return name.substr(0, 63);
}

}  // namespace pgwarden::protocol
