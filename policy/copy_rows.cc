#include "policy/copy_rows.h"

#include <pg_query.h>
#include <simdjson.h>

#include <cstring>

#include "policy/classifier.h"
#include "policy/parse_tree.h"

namespace pgwarden::policy {

namespace {

namespace sj = simdjson;
using sj::dom::element;

std::string quote_ident(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

// Where the parenthesis opening at `open` closes, lexing as PostgreSQL does (quotes, dollar
// quotes, comments); npos if it does not.
std::size_t matching_paren(std::string_view s, std::size_t open) {
  int depth = 0;
  for (std::size_t i = open; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '(') {
      ++depth;
    } else if (c == ')') {
      if (--depth == 0) return i;
    } else if (c == '\'' || c == '"') {
      // E'...' strings may escape the quote with a backslash.
      const bool backslashes = c == '\'' && i > 0 && (s[i - 1] == 'e' || s[i - 1] == 'E');
      for (++i; i < s.size(); ++i) {
        if (backslashes && s[i] == '\\') {
          ++i;
        } else if (s[i] == c) {
          if (i + 1 < s.size() && s[i + 1] == c) {
            ++i;
          } else {
            break;
          }
        }
      }
    } else if (c == '-' && i + 1 < s.size() && s[i + 1] == '-') {
      i = s.find('\n', i);
      if (i == std::string_view::npos) return i;
    } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      int nest = 0;
      for (; i + 1 < s.size(); ++i) {
        if (s[i] == '/' && s[i + 1] == '*') {
          ++nest;
          ++i;
        } else if (s[i] == '*' && s[i + 1] == '/') {
          ++i;
          if (--nest == 0) break;
        }
      }
    } else if (c == '$') {
      const std::size_t end = s.find('$', i + 1);
      if (end == std::string_view::npos) continue;
      const std::string_view tag = s.substr(i, end - i + 1);
      bool is_tag = true;
      for (const char t : tag.substr(1, tag.size() - 2)) {
        if (!std::isalnum(static_cast<unsigned char>(t)) && t != '_') is_tag = false;
      }
      if (!is_tag || (tag.size() > 2 && std::isdigit(static_cast<unsigned char>(tag[1])))) {
        continue;
      }
      const std::size_t close = s.find(tag, end + 1);
      if (close == std::string_view::npos) return close;
      i = close + tag.size() - 1;
    }
  }
  return std::string_view::npos;
}

// `json` without its "location", "stmt_location" and "stmt_len" members (and the comma before
// each): what two texts' trees of the same statement differ in.
std::string without_locations(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  for (std::size_t i = 0; i < json.size();) {
    bool cut = false;
    for (const std::string_view key : {"\"location\":", "\"stmt_location\":", "\"stmt_len\":"}) {
      if (json.compare(i, key.size(), key) != 0) continue;
      std::size_t end = i + key.size();
      if (end < json.size() && json[end] == '-') ++end;
      while (end < json.size() && json[end] >= '0' && json[end] <= '9') ++end;
      if (!out.empty() && out.back() == ',') out.pop_back();
      i = end;
      cut = true;
      break;
    }
    if (cut) continue;
    if (json[i] == '"') {  // a string: copied whole (a key inside one is not a member)
      const std::size_t start = i++;
      while (i < json.size() && json[i] != '"') i += json[i] == '\\' ? 2 : 1;
      out.append(json.substr(start, std::min(i + 1, json.size()) - start));
      ++i;
      continue;
    }
    out += json[i++];
  }
  return out;
}

// The tree of the one statement `sql` holds, minified, without "location" members (to compare
// two texts' trees); empty when it is not one statement.
std::string tree_without_locations(std::string_view sql) {
  const tree::Parsed parsed(sql);
  if (!parsed.ok()) return {};
  sj::dom::parser parser;
  element tree;
  sj::dom::array stmts;
  if (parser.parse(parsed.json()).get(tree) != sj::SUCCESS ||
      tree["stmts"].get_array().get(stmts) != sj::SUCCESS || stmts.size() != 1) {
    return {};
  }
  element stmt;
  if (stmts.at(0)["stmt"].get(stmt) != sj::SUCCESS) return {};
  return without_locations(sj::minify(stmt));
}

bool option_string(element def, std::string_view& out) {
  return def["arg"]["String"]["sval"].get_string().get(out) == sj::SUCCESS;
}

}  // namespace

std::optional<CopyOutStatement> copy_out_statement(std::string_view sql, std::string& why) {
  const tree::Parsed parsed(sql);
  why = "it is not one COPY ... TO STDOUT statement";
  if (!parsed.ok()) return std::nullopt;
  sj::dom::parser parser;
  element tree, copy;
  sj::dom::array stmts;
  if (parser.parse(parsed.json()).get(tree) != sj::SUCCESS ||
      tree["stmts"].get_array().get(stmts) != sj::SUCCESS || stmts.size() != 1 ||
      stmts.at(0)["stmt"]["CopyStmt"].get(copy) != sj::SUCCESS || tree::has(copy, "is_from") ||
      tree::has(copy, "filename") || tree::has(copy, "is_program") ||
      tree::has(copy, "whereClause")) {
    return std::nullopt;
  }
  CopyOutStatement out;
  sj::dom::array options;
  bool csv = false;
  std::string_view delimiter, quote, escape;
  if (copy["options"].get_array().get(options) == sj::SUCCESS) {
    for (element o : options) {
      element def;
      std::string_view name, value;
      if (o["DefElem"].get(def) != sj::SUCCESS ||
          def["defname"].get_string().get(name) != sj::SUCCESS) {
        return std::nullopt;
      }
      if (name == "format") {
        if (!option_string(def, value)) return std::nullopt;
        csv = value == "csv";
        if (value == "binary") out.format.kind = CopyFormat::Kind::Binary;
      } else if (name == "header") {
        element arg;
        bool on = true;  // HEADER alone
        if (def["arg"].get(arg) == sj::SUCCESS) {
          std::int64_t n = 0;
          if (arg["String"]["sval"].get_string().get(value) == sj::SUCCESS) {
            // As PostgreSQL reads it (case-insensitive); anything else it refuses itself.
            const std::string v = ascii_lower(value);
            if (v == "false" || v == "off" || v == "0") {
              on = false;
            } else if (v != "true" && v != "on" && v != "1" && v != "match") {
              why = "its HEADER value is not one pgwarden reads";
              return std::nullopt;
            }
          } else if (arg["Boolean"].error() == sj::SUCCESS) {
            if (arg["Boolean"]["boolval"].get_bool().get(on) != sj::SUCCESS) on = false;
          } else if (arg["Integer"].error() == sj::SUCCESS) {
            if (arg["Integer"]["ival"].get_int64().get(n) != sj::SUCCESS) n = 0;
            on = n != 0;
          }
        }
        out.format.header = on;
      } else if (name == "delimiter") {
        if (!option_string(def, delimiter) || delimiter.size() != 1) return std::nullopt;
      } else if (name == "quote") {
        if (!option_string(def, quote) || quote.size() != 1) return std::nullopt;
      } else if (name == "escape") {
        if (!option_string(def, escape) || escape.size() != 1) return std::nullopt;
      } else if (name == "null") {
        // A value equal to a chosen NULL string goes out as it is (PostgreSQL's own ambiguity):
        // a guess of a masked value would be confirmed.
        why = "its NULL option would let a value equal to it through";
        return std::nullopt;
      } else if (name != "force_quote") {
        why = "its option " + std::string(name) + " is not one pgwarden reads COPY rows under";
        return std::nullopt;
      }
    }
  }
  if (csv) {
    out.format.kind = CopyFormat::Kind::Csv;
    out.format.delimiter = ',';
    out.format.null_string.clear();
  }
  if (!delimiter.empty()) out.format.delimiter = delimiter[0];
  if (!quote.empty()) out.format.quote = quote[0];
  out.format.escape = !escape.empty() ? escape[0] : out.format.quote;
  element relation, query;
  if (copy["relation"].get(relation) == sj::SUCCESS) {
    std::string_view schema, rel;
    if (relation["relname"].get_string().get(rel) != sj::SUCCESS) return std::nullopt;
    std::string cols;
    sj::dom::array attlist;
    if (copy["attlist"].get_array().get(attlist) == sj::SUCCESS) {
      for (element a : attlist) {
        if (!cols.empty()) cols += ", ";
        cols += quote_ident(tree::str(a));
      }
    }
    out.select_text = "SELECT " + (cols.empty() ? std::string("*") : cols) + " FROM ONLY ";
    if (relation["schemaname"].get_string().get(schema) == sj::SUCCESS) {
      out.select_text += quote_ident(schema) + ".";
    }
    out.select_text += quote_ident(rel);
  } else if (copy["query"].get(query) == sj::SUCCESS) {
    // The query's own text, between COPY's parentheses; checked to parse to the very same tree.
    const std::size_t open = sql.find('(');
    const std::size_t close = open == std::string_view::npos ? open : matching_paren(sql, open);
    if (close == std::string_view::npos) return std::nullopt;
    out.select_text.assign(sql.substr(open + 1, close - open - 1));
    const std::string inner = tree_without_locations(out.select_text);
    if (inner.empty() || inner != without_locations(sj::minify(query))) {
      why = "pgwarden could not tell its query's text apart";
      return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  return out;
}

namespace {

std::string unescape_text(std::string_view raw) {
  std::string v;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '\\' || i + 1 == raw.size()) {
      v += raw[i];
      continue;
    }
    const char c = raw[++i];
    switch (c) {
      case 'b':
        v += '\b';
        break;
      case 'f':
        v += '\f';
        break;
      case 'n':
        v += '\n';
        break;
      case 'r':
        v += '\r';
        break;
      case 't':
        v += '\t';
        break;
      case 'v':
        v += '\v';
        break;
      case 'x': {
        int n = 0, digits = 0;
        while (digits < 2 && i + 1 < raw.size() &&
               std::isxdigit(static_cast<unsigned char>(raw[i + 1]))) {
          const char h = raw[++i];
          n = n * 16 + (h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
          ++digits;
        }
        v += digits != 0 ? static_cast<char>(n) : 'x';
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          int n = c - '0', digits = 1;
          while (digits < 3 && i + 1 < raw.size() && raw[i + 1] >= '0' && raw[i + 1] <= '7') {
            n = n * 8 + (raw[++i] - '0');
            ++digits;
          }
          v += static_cast<char>(n);
        } else {
          v += c;
        }
    }
  }
  return v;
}

void escape_text(std::string_view v, char delimiter, std::string& out) {
  for (const char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += delimiter == '\t' ? "\\t" : "\t";
        break;
      default:
        if (c == delimiter) out += '\\';
        out += c;
    }
  }
}

// The whole-value result of a rule for a column, as a SELECT gives it; nullopt: NULL.
std::optional<std::string> masked_value(Masker& m, const MaskColumn& c, std::string_view value) {
  if (c.kind != ValueKind::Text || *c.rule == MaskAction::Null) return std::nullopt;
  std::string out;
  m.apply_whole(*c.rule, value, out);
  return out;
}

CopyRowResult mask_text_row(Masker& m, const ResultPlan& plan, const CopyFormat& f,
                            std::string_view row, std::string& out) {
  const bool newline = !row.empty() && row.back() == '\n';
  if (newline) row.remove_suffix(1);
  const bool csv = f.kind == CopyFormat::Kind::Csv;
  struct Field {
    std::string_view raw;
    bool quoted = false;
  };
  std::vector<Field> fields;
  std::size_t i = 0;
  for (;;) {
    Field fl;
    const std::size_t start = i;
    if (csv && i < row.size() && row[i] == f.quote) {
      fl.quoted = true;
      for (++i; i < row.size(); ++i) {
        if (row[i] == f.escape && i + 1 < row.size() &&
            (row[i + 1] == f.quote || row[i + 1] == f.escape) &&
            (f.escape != f.quote || row[i + 1] == f.quote)) {
          ++i;
        } else if (row[i] == f.quote) {
          break;
        }
      }
      if (i >= row.size()) return CopyRowResult::Mismatch;  // an unterminated quote
      ++i;
      if (i < row.size() && row[i] != f.delimiter) return CopyRowResult::Mismatch;
    } else {
      for (; i < row.size() && row[i] != f.delimiter; ++i) {
        if (!csv && row[i] == '\\') ++i;
      }
      if (i > row.size()) return CopyRowResult::Mismatch;
    }
    fl.raw = row.substr(start, i - start);
    fields.push_back(fl);
    if (i >= row.size()) break;
    ++i;  // the delimiter
  }
  if (fields.size() != plan.columns.size()) return CopyRowResult::Mismatch;
  bool changed = false;
  out.clear();
  for (std::size_t c = 0; c < fields.size(); ++c) {
    if (c != 0) out += f.delimiter;
    const MaskColumn& col = plan.columns[c];
    const Field& fl = fields[c];
    if (!col.rule || (!fl.quoted && fl.raw == f.null_string)) {
      out.append(fl.raw);
      continue;
    }
    std::string value;
    if (!csv) {
      value = unescape_text(fl.raw);
    } else if (fl.quoted) {
      const std::string_view in = fl.raw.substr(1, fl.raw.size() - 2);
      for (std::size_t k = 0; k < in.size(); ++k) {
        if (in[k] == f.escape && k + 1 < in.size()) ++k;
        value += in[k];
      }
    } else {
      value.assign(fl.raw);
    }
    changed = true;
    const std::optional<std::string> masked = masked_value(m, col, value);
    if (!masked) {
      out += f.null_string;
    } else if (!csv) {
      escape_text(*masked, f.delimiter, out);
    } else {
      out += f.quote;
      for (const char ch : *masked) {
        if (ch == f.quote || ch == f.escape) out += f.escape;
        out += ch;
      }
      out += f.quote;
    }
  }
  if (newline) out += '\n';
  return changed ? CopyRowResult::Replace : CopyRowResult::Keep;
}

std::uint32_t be32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (int k = 0; k < 4; ++k) v = (v << 8) | static_cast<unsigned char>(s[at + k]);
  return v;
}

void put32(std::string& out, std::uint32_t v) {
  for (int sh = 24; sh >= 0; sh -= 8) out += static_cast<char>((v >> sh) & 0xff);
}

CopyRowResult mask_binary_row(Masker& m, const ResultPlan& plan, std::string_view msg, bool& header,
                              std::string& out) {
  std::size_t i = 0;
  out.clear();
  if (header) {
    if (msg.size() < 19 || std::memcmp(msg.data(), "PGCOPY\n\377\r\n", 11) != 0) {
      return CopyRowResult::Mismatch;
    }
    const std::uint32_t ext = be32(msg, 15);
    if (ext > msg.size() - 19) return CopyRowResult::Mismatch;
    i = 19 + ext;
    out.append(msg.substr(0, i));
    header = false;
  }
  bool changed = false;
  while (i < msg.size()) {
    if (msg.size() - i < 2) return CopyRowResult::Mismatch;
    const auto count = static_cast<std::int16_t>((static_cast<unsigned char>(msg[i]) << 8) |
                                                 static_cast<unsigned char>(msg[i + 1]));
    out.append(msg.substr(i, 2));
    i += 2;
    if (count == -1) continue;  // the trailer
    if (count < 0 || static_cast<std::size_t>(count) != plan.columns.size()) {
      return CopyRowResult::Mismatch;
    }
    for (std::size_t c = 0; c < plan.columns.size(); ++c) {
      if (msg.size() - i < 4) return CopyRowResult::Mismatch;
      const auto len = static_cast<std::int32_t>(be32(msg, i));
      if (len < -1 || (len > 0 && static_cast<std::size_t>(len) > msg.size() - i - 4)) {
        return CopyRowResult::Mismatch;
      }
      const std::size_t field = 4 + static_cast<std::size_t>(len < 0 ? 0 : len);
      const MaskColumn& col = plan.columns[c];
      if (!col.rule || len < 0) {
        out.append(msg.substr(i, field));
      } else {
        changed = true;
        const auto masked = masked_value(m, col, msg.substr(i + 4, field - 4));
        if (!masked) {
          put32(out, 0xffffffffu);
        } else {
          put32(out, static_cast<std::uint32_t>(masked->size()));
          out += *masked;
        }
      }
      i += field;
    }
  }
  return changed ? CopyRowResult::Replace : CopyRowResult::Keep;
}

}  // namespace

CopyRowResult mask_copy_row(Masker& masker, const ResultPlan& plan, const CopyFormat& format,
                            std::string_view row, bool& header, std::string& out) {
  if (format.kind == CopyFormat::Kind::Binary)
    return mask_binary_row(masker, plan, row, header, out);
  if (header) {
    header = false;  // the columns' names
    return CopyRowResult::Keep;
  }
  return mask_text_row(masker, plan, format, row, out);
}

}  // namespace pgwarden::policy
