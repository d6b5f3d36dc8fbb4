// A map keyed by a statement's, portal's or other object's name, found by string_view without
// building a string: the per-message lookups of the pipeline model and the stages.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pgwarden::protocol {

struct NameHash {
  using is_transparent = void;
  // The unnamed statement and portal, named by nearly every message, are not hashed.
  std::size_t operator()(std::string_view s) const noexcept {
    return s.empty() ? 0 : std::hash<std::string_view>{}(s);
  }
};

template <class T>
using ByName = std::unordered_map<std::string, T, NameHash, std::equal_to<>>;

// PostgreSQL keys prepared statements and portals by their first NAMEDATALEN-1 bytes: two names
// that share those are one object upstream, and every map of names keys them so.
inline std::string_view name_key(std::string_view name) noexcept {
  return name.substr(0, 63);
}

}  // namespace pgwarden::protocol
