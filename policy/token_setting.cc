#include "policy/token_setting.h"

#include <cstring>

#include "policy/parse_tree.h"

namespace pgwarden::policy {

namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
}

bool space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Case-insensitive `word` at `at`, not followed by an identifier character.
bool word_at(std::string_view s, std::size_t at, std::string_view word) {
  if (s.size() - at < word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    if (lower(s[at + i]) != word[i]) return false;
  }
  const std::size_t end = at + word.size();
  if (end == s.size()) return true;
  const char c = lower(s[end]);
  return !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
           static_cast<unsigned char>(c) >= 0x80);
}

std::size_t skip_space(std::string_view s, std::size_t i) {
  while (i < s.size() && space(s[i])) ++i;
  return i;
}

// Whether the text names pgwarden.token in any spelling PostgreSQL reads as that name:
// quotes, spaces and case aside ("PGWarden" . "token").
// A comment after "pgwarden" is read to its end, and may hold the next "pgwarden": after
// kMaxComments of them the text counts as naming the setting (refused), so hostile texts cost
// linear time, never quadratic.
constexpr int kMaxComments = 16;

bool names_setting(std::string_view sql) {
  int comments = 0;
  for (std::size_t i = 0; i + 8 <= sql.size(); ++i) {
    if (lower(sql[i]) != 'p') continue;
    std::size_t k = 0;
    while (k < 8 && lower(sql[i + k]) == "pgwarden"[k]) ++k;
    if (k < 8) continue;
    std::size_t j = i + 8;
    // Spaces, quotes and comments (nested /* */, -- to the line's end) may stand between.
    auto skip = [&] {
      for (;;) {
        if (j < sql.size() && (space(sql[j]) || sql[j] == '"')) {
          ++j;
        } else if (sql.substr(j, 2) == "--") {
          if (++comments > kMaxComments) return false;
          while (j < sql.size() && sql[j] != '\n') ++j;
        } else if (sql.substr(j, 2) == "/*") {
          if (++comments > kMaxComments) return false;
          int depth = 0;
          do {
            if (sql.substr(j, 2) == "/*") {
              ++depth;
              j += 2;
            } else if (sql.substr(j, 2) == "*/") {
              --depth;
              j += 2;
            } else {
              ++j;
            }
          } while (depth > 0 && j < sql.size());
        } else {
          return true;
        }
      }
    };
    if (!skip()) return true;
    if (j >= sql.size() || sql[j] != '.') continue;
    ++j;
    if (!skip()) return true;
    if (sql.size() - j >= 5 && lower(sql[j]) == 't' && lower(sql[j + 1]) == 'o' &&
        lower(sql[j + 2]) == 'k' && lower(sql[j + 3]) == 'e' && lower(sql[j + 4]) == 'n') {
      return true;
    }
  }
  return false;
}

bool contains_ci(std::string_view s, std::string_view word) {
  for (std::size_t i = 0; i + word.size() <= s.size(); ++i) {
    std::size_t k = 0;
    while (k < word.size() && lower(s[i + k]) == word[k]) ++k;
    if (k == word.size()) return true;
  }
  return false;
}

bool token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

}  // namespace

// Spellings only PostgreSQL's own lexer reads: Unicode escapes in identifiers or strings
// (U&"pgw\0061rden", UESCAPE) and escape strings in set_config's arguments. Such texts are parsed
// (libpg_query, as the server would) and refused if the tree names the setting.
static bool names_setting_escaped(std::string_view sql) {
  if (!contains_ci(sql, "u&") && !contains_ci(sql, "set_config")) return false;
  const tree::Parsed parsed(sql);
  if (!parsed.ok()) return false;  // the server's parser refuses it too: it sets nothing
  return contains_ci(parsed.json(), "pgwarden.token");
}

// Runs on every statement: memchr (vectorised) for the few bytes any spelling that matters must
// contain — the 'w' of "pgwarden", the '&' of U&, the '_' of set_config — and a look around
// each hit; only texts with one go on to the byte-by-byte readings above.
static bool may_name_setting(std::string_view sql) {
  const char* const begin = sql.data();
  const char* const end = begin + sql.size();
  auto hits = [&](char c, auto&& near) {
    for (const char* p = begin; p < end;) {
      p = static_cast<const char*>(std::memchr(p, c, static_cast<std::size_t>(end - p)));
      if (p == nullptr) return false;
      if (near(static_cast<std::size_t>(p - begin))) return true;
      ++p;
    }
    return false;
  };
  auto at = [&](std::size_t pos, std::string_view word) {  // case-insensitive
    if (pos > sql.size() || sql.size() - pos < word.size()) return false;
    for (std::size_t k = 0; k < word.size(); ++k) {
      if (lower(sql[pos + k]) != word[k]) return false;
    }
    return true;
  };
  auto pgwarden = [&](std::size_t w) { return w >= 2 && at(w - 2, "pgwarden"); };
  return hits('w', pgwarden) || hits('W', pgwarden) ||
         hits('&', [&](std::size_t a) { return a >= 1 && lower(sql[a - 1]) == 'u'; }) ||
         hits('_', [&](std::size_t u) { return u >= 3 && at(u - 3, "set_config"); });
}

TokenSetting token_setting(std::string_view sql, std::string_view& token) {
  if (!may_name_setting(sql)) return TokenSetting::None;
  if (!names_setting(sql)) {
    return names_setting_escaped(sql) ? TokenSetting::Other : TokenSetting::None;
  }
  std::size_t i = skip_space(sql, 0);
  if (!word_at(sql, i, "set")) return TokenSetting::Other;
  i = skip_space(sql, i + 3);
  if (word_at(sql, i, "session")) i = skip_space(sql, i + 7);
  if (!word_at(sql, i, "pgwarden")) return TokenSetting::Other;
  i += 8;
  if (i >= sql.size() || sql[i] != '.') return TokenSetting::Other;
  if (!word_at(sql, i + 1, "token")) return TokenSetting::Other;
  i = skip_space(sql, i + 6);
  if (i < sql.size() && sql[i] == '=') {
    i = skip_space(sql, i + 1);
  } else if (word_at(sql, i, "to")) {
    i = skip_space(sql, i + 2);
  } else {
    return TokenSetting::Other;
  }
  if (i >= sql.size() || sql[i] != '\'') return TokenSetting::Other;
  const std::size_t start = ++i;
  while (i < sql.size() && token_char(sql[i])) ++i;
  if (i >= sql.size() || sql[i] != '\'' || i == start) return TokenSetting::Other;
  token = sql.substr(start, i - start);
  i = skip_space(sql, i + 1);
  if (i < sql.size() && sql[i] == ';') i = skip_space(sql, i + 1);
  return i == sql.size() ? TokenSetting::Refresh : TokenSetting::Other;
}

}  // namespace pgwarden::policy
