// The maps of names: RecentByName answers every lookup as the plain map does, whatever changes
// came between (what it remembers of the last lookup never outlives a change).
#include "protocol/by_name.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

namespace pgwarden::protocol {
namespace {

TEST(RecentByName, AnswersAsAPlainMapThroughEveryChange) {
  RecentByName<int> recent;
  std::map<std::string, int> plain;
  const std::string names[] = {"", "P0_1", "P0_2", "P0_10", "s", std::string(63, 'n')};
  std::mt19937 rng(7);
  int hits = 0;
  for (int step = 0; step < 200000; ++step) {
    const std::string& name = names[rng() % std::size(names)];
    switch (rng() % 8) {
      case 0:
      case 1: {  // emplace (may rehash)
        const int v = static_cast<int>(rng() % 1000);
        const bool added = recent.emplace(name, v).second;
        EXPECT_EQ(added, plain.emplace(name, v).second);
        break;
      }
      case 2:  // erase by name
        EXPECT_EQ(recent.erase(name), plain.erase(name));
        break;
      case 3: {  // erase by position
        const auto it = recent.find(name);
        if (it != recent.end()) recent.erase(it);
        plain.erase(name);
        break;
      }
      case 4:
        if (rng() % 50 == 0) {
          recent.clear();
          plain.clear();
        }
        break;
      case 5: {  // a change of the value found
        const auto it = recent.find(name);
        if (it != recent.end()) {
          it->second += 1;
          plain[name] += 1;
        }
        break;
      }
      default: {  // lookups, mostly of the name looked up last
        const auto it = recent.find(name);
        const auto want = plain.find(name);
        ASSERT_EQ(it == recent.end(), want == plain.end()) << name << " at step " << step;
        if (it != recent.end()) {
          ASSERT_EQ(it->first, name);
          ASSERT_EQ(it->second, want->second) << name;
          ++hits;
        }
        const RecentByName<int>& constant = recent;
        EXPECT_EQ(constant.count(name), plain.count(name));
        break;
      }
    }
    ASSERT_EQ(recent.size(), plain.size());
  }
  EXPECT_GT(hits, 10000);  // lookups that found their name were tested, not only misses
  // A copy remembers nothing of the original's nodes.
  RecentByName<int> copy;
  copy = recent;
  recent.clear();
  for (const std::string& name : names) {
    EXPECT_EQ(copy.count(name), plain.count(name)) << name;
    EXPECT_EQ(recent.count(name), 0u) << name;
  }
}

}  // namespace
}  // namespace pgwarden::protocol
