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
#include <utility>

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

// A ByName that remembers where its last lookup found its name: the statements a session binds
// again and again are found by one comparison. Every change to the map forgets it (an iterator
// may not survive a rehash), so what is remembered is always in the map.
template <class T>
class RecentByName {
  using Map = ByName<T>;

 public:
  using iterator = typename Map::iterator;
  using const_iterator = typename Map::const_iterator;
  RecentByName() = default;
  RecentByName(const RecentByName& o) : map_(o.map_) {}
  RecentByName& operator=(const RecentByName& o) {
    map_ = o.map_;
    recent_ = map_.end();
    return *this;
  }
  iterator find(std::string_view key) { return find_recent(key); }
  const_iterator find(std::string_view key) const { return find_recent(key); }
  iterator end() noexcept { return map_.end(); }
  const_iterator end() const noexcept { return map_.end(); }
  std::size_t size() const noexcept { return map_.size(); }
  bool empty() const noexcept { return map_.empty(); }
  std::size_t count(std::string_view key) const { return find(key) != end() ? 1 : 0; }
  template <class... A>
  std::pair<iterator, bool> emplace(A&&... a) {
    recent_ = map_.end();
    return map_.emplace(std::forward<A>(a)...);
  }
  iterator erase(iterator it) {
    recent_ = map_.end();
    return map_.erase(it);
  }
  std::size_t erase(std::string_view key) {
    const iterator it = find(key);
    if (it == end()) return 0;
    erase(it);
    return 1;
  }
  void clear() noexcept {
    recent_ = map_.end();
    map_.clear();
  }

 private:
  // (A lookup through a const map remembers too: the memory is not the map's contents.)
  iterator find_recent(std::string_view key) const {
    if (recent_ != map_.end() && recent_->first == key) return recent_;
    const iterator it = map_.find(key);
    if (it != map_.end()) recent_ = it;
    return it;
  }
  mutable Map map_;
  mutable iterator recent_ = map_.end();
};

// PostgreSQL keys prepared statements and portals by their first NAMEDATALEN-1 bytes: two names
// that share those are one object upstream, and every map of names keys them so.
inline std::string_view name_key(std::string_view name) noexcept {
  return name.substr(0, 63);
}

}  // namespace pgwarden::protocol
