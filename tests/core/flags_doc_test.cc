// `pgwarden --help` and README.md's flag tables are held to the parser's own list of flags: each
// flag is documented in both, with its unit (a value placeholder) and its default, and a default
// given as a number in --help is the one README's table gives.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/flags.h"

namespace pgwarden::core {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Every "--name" in `text` (lower-case letters and dashes, not ending in a dash). Written out
// rather than with std::regex, which g++ 12 warns about in the sanitizer build.
std::vector<std::string> flags_in(const std::string& text) {
  std::vector<std::string> out;
  const auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
  for (std::size_t i = 0; i + 2 < text.size(); ++i) {
    if (text[i] != '-' || text[i + 1] != '-' || !lower(text[i + 2])) continue;
    if (i > 0 && text[i - 1] == '-') continue;
    std::size_t j = i + 2;
    while (j < text.size() && (lower(text[j]) || text[j] == '-')) ++j;
    while (text[j - 1] == '-') --j;
    out.push_back(text.substr(i, j - i));
    i = j - 1;
  }
  return out;
}

// A value placeholder in a --help head: a space, then an upper-case letter.
bool has_placeholder(const std::string& head) {
  for (std::size_t i = 0; i + 1 < head.size(); ++i) {
    if (head[i] == ' ' && head[i + 1] >= 'A' && head[i + 1] <= 'Z') return true;
  }
  return false;
}

// "(default N" or "(default: N" where N starts with a digit: N, up to a space, ';', ')' or ','.
std::string numeric_default(const std::string& text) {
  for (const std::string key : {"(default ", "(default: "}) {
    const auto at = text.find(key);
    if (at == std::string::npos) continue;
    const std::size_t from = at + key.size();
    if (from >= text.size() || text[from] < '0' || text[from] > '9') continue;
    const auto end = text.find_first_of(" ;),\n", from);
    return text.substr(from, end == std::string::npos ? std::string::npos : end - from);
  }
  return "";
}

// One entry of --help: the flags its first line names, that line's head (flags and
// placeholders), and the entry's whole text.
struct HelpEntry {
  std::string head;
  std::string text;
};

// --help's entries by flag. An entry starts at a line "  --flag ..."; its head runs to the first
// double space after it (the description's column), or the whole line when the head overflows.
std::map<std::string, HelpEntry> help_entries() {
  std::map<std::string, HelpEntry> out;
  std::vector<std::string> current;
  for (const std::string& line : lines_of(usage())) {
    if (line.rfind("  --", 0) == 0) {
      const auto gap = line.find("  ", 2);
      HelpEntry e{line.substr(2, gap == std::string::npos ? std::string::npos : gap - 2), line};
      current = flags_in(e.head);
      for (const auto& f : current) out[f] = e;
    } else if (line.rfind("    ", 0) == 0 && !current.empty()) {
      for (const auto& f : current) out[f].text += "\n" + line;
    } else {
      current.clear();
    }
  }
  return out;
}

// README.md's table rows whose first cell names flags: flag -> the row's default cell.
std::map<std::string, std::string> readme_rows() {
  std::ifstream in(std::string(PGW_SOURCE_DIR) + "/README.md");
  EXPECT_TRUE(in.good()) << "README.md not found under " << PGW_SOURCE_DIR;
  std::map<std::string, std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("| `--", 0) != 0) continue;
    // Cells are separated by " | "; "\|" inside a cell is an escaped pipe.
    std::vector<std::string> cells;
    std::string cell;
    for (std::size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
        cell += '|';
        ++i;
      } else if (line[i] == '|') {
        cells.push_back(cell);
        cell.clear();
      } else {
        cell += line[i];
      }
    }
    if (cells.size() < 3) continue;
    for (const auto& f : flags_in(cells[0])) out[f] = cells[1];
  }
  return out;
}

TEST(FlagsDocTest, HelpListsEveryFlagWithItsUnitAndDefault) {
  const auto help = help_entries();
  std::set<std::string> accepted;
  for (const auto& f : flag_names()) {
    accepted.insert(f);
    const auto it = help.find(f);
    if (it == help.end()) {
      ADD_FAILURE() << f << " is accepted but --help does not list it";
      continue;
    }
    if (f == "--help" || f == "--version") continue;
    const bool takes_value =
        parse_flags({"--upstream", "127.0.0.1:1", f}).message.find("needs a value") !=
        std::string::npos;
    const bool placeholder = has_placeholder(it->second.head);
    EXPECT_EQ(takes_value, placeholder)
        << f << ": --help's head \"" << it->second.head
        << "\" must show a unit or placeholder exactly when the flag takes a value";
    EXPECT_TRUE(it->second.text.find("default") != std::string::npos ||
                it->second.text.find("required") != std::string::npos)
        << f << ": --help does not state its default:\n"
        << it->second.text;
  }
  for (const auto& [f, entry] : help) {
    EXPECT_TRUE(accepted.count(f)) << "--help lists " << f << ", which the parser does not accept";
  }
}

TEST(FlagsDocTest, ReadmeTablesMatchHelp) {
  const auto help = help_entries();
  const auto readme = readme_rows();
  ASSERT_GT(readme.size(), 20u) << "README.md's flag tables were not found";
  for (const auto& f : flag_names()) {
    if (f == "--help" || f == "--version") continue;
    const auto row = readme.find(f);
    if (row == readme.end()) {
      ADD_FAILURE() << f << " has no row in README.md's flag tables";
      continue;
    }
    const auto entry = help.find(f);
    if (entry == help.end()) continue;  // reported by the test above
    const std::string def = numeric_default(entry->second.text);
    if (!def.empty()) {
      EXPECT_NE(row->second.find(def), std::string::npos)
          << f << ": --help says default " << def << ", README.md's table says" << row->second;
    }
  }
  std::set<std::string> accepted;
  for (const auto& f : flag_names()) accepted.insert(f);
  for (const auto& [f, cell] : readme) {
    EXPECT_TRUE(accepted.count(f)) << "README.md documents " << f << ", which does not exist";
  }
}

}  // namespace
}  // namespace pgwarden::core
