#include "policy/masking.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>

#include "policy/binary_values.h"
#include "policy/classifier.h"
#include "policy/policy_json.h"
#include "protocol/crypto.h"

namespace pgwarden::policy {

namespace {

namespace sj = simdjson;
namespace pr = pgwarden::protocol;

constexpr std::string_view kRedacted = "REDACTED";

// A SQL string literal of `s` (quotes doubled; standard_conforming_strings does not matter
// because the text never holds a backslash: LIKE uses '!' as its escape).
std::string sql_literal(std::string_view s) {
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

std::string like_pattern(std::string_view glob) {
  std::string out;
  for (const char c : glob) {
    if (c == '*') {
      out += '%';
    } else {
      if (c == '%' || c == '_' || c == '!') out += '!';
      out += c;
    }
  }
  return out;
}

std::uint16_t get_u16(const std::byte* p) {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) |
                                    std::to_integer<unsigned>(p[1]));
}
std::uint32_t get_u32(const std::byte* p) {
  return (std::to_integer<std::uint32_t>(p[0]) << 24) |
         (std::to_integer<std::uint32_t>(p[1]) << 16) |
         (std::to_integer<std::uint32_t>(p[2]) << 8) | std::to_integer<std::uint32_t>(p[3]);
}
void put_u32(std::basic_string<std::byte>& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::byte>((v >> s) & 0xff));
}

std::string_view as_chars(const std::byte* p, std::size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

// A NUL-terminated string at p[i..end); advances i past the NUL. False if unterminated.
bool take_cstring(pr::Bytes m, std::size_t& i, std::string_view& s) {
  const void* nul = std::memchr(m.data() + i, 0, m.size() - i);
  if (nul == nullptr) return false;
  const std::size_t n = static_cast<const std::byte*>(nul) - (m.data() + i);
  s = as_chars(m.data() + i, n);
  i += n + 1;
  return true;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string hex16(const std::array<unsigned char, 32>& h) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 8; ++i) {
    out += kDigits[h[i] >> 4];
    out += kDigits[h[i] & 15];
  }
  return out;
}

// Stars every character but the last `keep` (UTF-8 aware); with `only_alnum`, only letters and
// digits are starred and counted, separators are kept.
void star_all_but_last(std::string_view s, std::size_t keep, bool only_alnum, std::string& out) {
  auto counts = [&](char c) {
    return only_alnum ? is_alnum(c) : (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  };
  std::size_t total = 0;
  for (const char c : s) total += counts(c);
  std::size_t seen = 0;
  bool kept = false;  // the character being written is kept (continuation bytes follow it)
  for (const char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) == 0x80) {
      if (kept || only_alnum) out += c;
      continue;
    }
    if (!counts(c)) {
      out += c;
      kept = true;
      continue;
    }
    kept = ++seen + keep > total;
    out += kept ? c : '*';
  }
}

// Inside a JSON string at byte `pos` of `v`?
bool inside_json_string(std::string_view v, std::size_t pos) {
  bool in = false;
  for (std::size_t i = 0; i < pos && i < v.size(); ++i) {
    if (in && v[i] == '\\') {
      ++i;
    } else if (v[i] == '"') {
      in = !in;
    }
  }
  return in;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view name) {
  std::size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    const char c =
        static_cast<char>(name[n] >= 'A' && name[n] <= 'Z' ? name[n] - 'A' + 'a' : name[n]);
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == c) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

const char* mask_action_name(MaskAction a) {
  switch (a) {
    case MaskAction::Redact:
      return "redact";
    case MaskAction::Partial:
      return "partial";
    case MaskAction::Hash:
      return "hash";
    case MaskAction::Null:
      return "null";
  }
  return "?";
}

bool audience_matches(const std::vector<std::string>& users, const std::vector<std::string>& groups,
                      std::string_view identity, const std::vector<std::string>& caller_groups) {
  if (groups.empty() && users.empty()) return true;
  for (const auto& u : users) {
    if (u == identity) return true;
  }
  for (const auto& g : groups) {
    if (std::find(caller_groups.begin(), caller_groups.end(), g) != caller_groups.end()) {
      return true;
    }
  }
  return false;
}

bool actor_audience_matches(const std::vector<std::string>& users,
                            const std::vector<std::string>& groups,
                            const std::vector<std::string>& actors,
                            const std::vector<std::string>& actor_groups, const Who& who) {
  if (who.actor.empty() || (actors.empty() && actor_groups.empty())) return false;
  bool agent = std::find(actors.begin(), actors.end(), who.actor) != actors.end();
  for (std::size_t i = 0; !agent && who.actor_groups != nullptr && i < actor_groups.size(); ++i) {
    agent = std::find(who.actor_groups->begin(), who.actor_groups->end(), actor_groups[i]) !=
            who.actor_groups->end();
  }
  return agent && audience_matches(users, groups, who.identity, *who.groups);
}

std::optional<MaskAction> MaskProfile::action_for(const PiiFinding& f) const {
  if (f.kind == PiiKind::Custom) {
    return f.custom < custom_actions.size() ? std::optional(custom_actions[f.custom])
                                            : std::nullopt;
  }
  return detect[static_cast<std::size_t>(f.kind)];
}

// It runs in the caller's session, under the caller's search_path: every function, operator and
// type is named with its schema, so that nothing the caller created can stand in for them.
std::string MaskProfile::catalog_query() const {
  if (columns.empty()) return {};
  std::string q;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    const ColumnRule& r = columns[i];
    if (!q.empty()) q += " UNION ALL ";
    q += "SELECT a.attrelid::pg_catalog.int8, a.attnum, " + std::to_string(i) +
         " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c"
         " ON c.oid OPERATOR(pg_catalog.=) a.attrelid JOIN pg_catalog.pg_namespace n"
         " ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
         " WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"
         " AND pg_catalog.lower(a.attname::pg_catalog.text) OPERATOR(pg_catalog.~~)"
         " pg_catalog.lower(pg_catalog.like_escape(" +
         sql_literal(like_pattern(r.column)) + "::pg_catalog.text, '!'::pg_catalog.text))";
    // Names match whatever their case, quoted ("Email") or not, non-ASCII letters too.
    if (!r.table.empty()) {
      q += " AND pg_catalog.lower(c.relname::pg_catalog.text) OPERATOR(pg_catalog.=) "
           "pg_catalog.lower(" +
           sql_literal(r.table) + "::pg_catalog.text)";
    }
    if (!r.schema.empty()) {
      q += " AND pg_catalog.lower(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.=) "
           "pg_catalog.lower(" +
           sql_literal(r.schema) + "::pg_catalog.text)";
    }
  }
  return q + " ORDER BY 3";
}

ValueKind value_kind(std::uint32_t oid, bool binary) {
  switch (oid) {
    case 25:    // text
    case 1043:  // varchar
    case 1042:  // bpchar
    case 19:    // name
    case 18:    // char
    case 705:   // unknown
      return ValueKind::Text;
    case 1009:  // text[]
    case 1015:  // varchar[]
    case 1014:  // bpchar[]
      return binary ? ValueKind::Other : ValueKind::TextArray;
    case 114:  // json
      return ValueKind::Json;
    case 3802:  // jsonb: binary starts with a version byte
      return binary ? ValueKind::Other : ValueKind::Json;
    case 20:  // int8
    case 23:  // int4
      return ValueKind::Integer;
    case 1700:
      return ValueKind::Numeric;
    case 16:    // bool
    case 21:    // int2
    case 26:    // oid
    case 700:   // float4
    case 701:   // float8
    case 1082:  // date
    case 1083:  // time
    case 1266:  // timetz
    case 1114:  // timestamp
    case 1184:  // timestamptz
    case 1186:  // interval
    case 2950:  // uuid
    case 869:   // inet
    case 650:   // cidr
    case 829:   // macaddr
    case 3220:  // pg_lsn
      return ValueKind::NoPii;
    default:
      return ValueKind::Other;
  }
}

bool build_plan(const MaskProfile& profile, const MaskedAttrs* attrs, pr::Bytes m,
                std::string_view formats, ResultPlan& plan, const ComputedRules* computed) {
  plan.columns.clear();
  plan.known = false;
  plan.active = false;
  if (m.size() < 7) return false;
  const std::uint16_t n = get_u16(m.data() + 5);
  std::size_t i = 7;
  for (std::uint16_t c = 0; c < n; ++c) {
    std::string_view name;
    if (!take_cstring(m, i, name) || m.size() - i < 18) return false;
    const std::uint32_t table = get_u32(m.data() + i);
    const auto attnum = static_cast<std::int16_t>(get_u16(m.data() + i + 4));
    const std::uint32_t type = get_u32(m.data() + i + 6);
    std::uint16_t format = get_u16(m.data() + i + 16);
    i += 18;
    if (formats.size() == 2) {
      format = static_cast<std::uint16_t>(static_cast<unsigned char>(formats[1]));
    } else if (formats.size() >= 2u * (c + 1u)) {
      format = static_cast<std::uint16_t>(static_cast<unsigned char>(formats[2 * c + 1]));
    } else if (!formats.empty()) {
      format = 0;
    }
    MaskColumn col;
    col.binary = format == 1;
    col.type_oid = type;
    col.kind = value_kind(type, col.binary);
    if (attrs != nullptr && table != 0) {
      const auto it = attrs->action_of.find(MaskedAttrs::key(table, attnum));
      if (it != attrs->action_of.end()) col.rule = it->second;
    }
    if (!col.rule && table == 0 && computed != nullptr) {
      col.rule = c < computed->by_position.size() ? computed->by_position[c] : computed->any;
    }
    for (std::size_t r = 0; !col.rule && r < profile.columns.size(); ++r) {
      // Unqualified rules also match by the name the client sees (computed columns, aliases
      // of expressions); qualified ones only through the catalog.
      if (profile.columns[r].table.empty() && glob_match(profile.columns[r].column, name)) {
        col.rule = profile.columns[r].action;
      }
    }
    plan.active = plan.active || col.rule || (profile.scans() && col.kind != ValueKind::NoPii);
    plan.columns.push_back(col);
  }
  plan.known = true;
  return true;
}

bool Masker::scan(const MaskProfile& p, std::string_view v) {
  if (!scanner_.scan(v, *p.detectors, found_)) return false;
  std::erase_if(found_, [&](const PiiFinding& f) { return !p.action_for(f).has_value(); });
  return true;
}

const char* Masker::detector_name(std::size_t i) noexcept {
  return i >= kByColumnRule ? "column" : pii_kind_name(static_cast<PiiKind>(i));
}

void Masker::apply_whole(MaskAction a, std::string_view v, std::string& out) {
  note_replaced(kByColumnRule);
  switch (a) {
    case MaskAction::Hash:
      out += "pii_" + hex16(protocol::hmac_sha256(key_, v));
      return;
    case MaskAction::Partial: {
      // One finding of a built-in kind that is the whole value, spaces around it aside.
      static const auto builtin = PiiDetectors::build();
      if (builtin.ok() && whole_scanner_.scan(v, **builtin, whole_found_) &&
          whole_found_.size() == 1 && whole_found_[0].kind != PiiKind::Custom &&
          v.find_first_not_of(' ') == whole_found_[0].begin &&
          v.find_last_not_of(' ') + 1 == whole_found_[0].end) {
        const PiiFinding& f = whole_found_[0];
        out.append(v.substr(0, f.begin));
        apply_finding(a, f, v.substr(f.begin, f.end - f.begin), out);
        out.append(v.substr(f.end));
        return;
      }
      out += kRedacted;  // not recognisably its kind: nothing of it is shown
      return;
    }
    case MaskAction::Redact:
    case MaskAction::Null:
      out += kRedacted;
      return;
  }
}

void Masker::apply_finding(MaskAction a, const PiiFinding& f, std::string_view span,
                           std::string& out) const {
  const char* kind = pii_kind_name(f.kind);
  // Written with look-alikes: what partial would keep is not what was validated.
  if (f.lookalike && a == MaskAction::Partial) a = MaskAction::Redact;
  if (a == MaskAction::Hash) {
    // Normalised first, so the same number or address gives the same pseudonym however it was
    // written (joins and grouping on the masked value still work).
    std::string norm = std::string(kind) + ":";
    for (const char c : span) {
      if (f.kind == PiiKind::Email || f.kind == PiiKind::Custom) {
        norm += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      } else if (is_alnum(c)) {
        norm += c;
      }
    }
    out += std::string(kind) + "_" + hex16(protocol::hmac_sha256(key_, norm));
    return;
  }
  if (a != MaskAction::Partial) {
    out += kRedacted;
    return;
  }
  switch (f.kind) {
    case PiiKind::Email: {
      const std::size_t at = span.rfind('@');
      if (at == std::string_view::npos) {
        out += kRedacted;
        return;
      }
      out += span.substr(0, 1);
      out += "***";
      out += span.substr(at);
      return;
    }
    case PiiKind::Iban: {
      std::string tail;
      star_all_but_last(span.substr(2), 4, true, tail);
      out += span.substr(0, 2);
      out += tail;
      return;
    }
    case PiiKind::CardNumber:
    case PiiKind::Ssn:
    case PiiKind::Phone: {
      std::size_t digits = 0;
      for (const char c : span) digits += is_digit(c);
      std::size_t seen = 0;
      for (const char c : span) {
        if (!is_digit(c)) {
          out += c;
        } else {
          out += ++seen + 4 > digits ? c : '*';
        }
      }
      return;
    }
    case PiiKind::Custom:
      star_all_but_last(span, 4, false, out);
      return;
  }
}

void Masker::replace_findings(const MaskProfile& p, std::string_view v, std::string& out,
                              bool same_length) {
  out.clear();
  std::size_t pos = 0;
  for (const PiiFinding& f : found_) {
    note_replaced(static_cast<std::size_t>(f.kind));
    out.append(v.substr(pos, f.begin - pos));
    const std::string_view span = v.substr(f.begin, f.end - f.begin);
    if (same_length) {
      out.append(span.size(), '*');
    } else {
      apply_finding(*p.action_for(f), f, span, out);
    }
    pos = f.end;
  }
  out.append(v.substr(pos));
}

Masker::Verdict Masker::mask_value(const MaskProfile& p, const MaskColumn& c, std::string_view v,
                                   std::string& out) {
  if (c.rule) {
    if (c.kind != ValueKind::Text || *c.rule == MaskAction::Null) return Verdict::Null;
    out.clear();
    apply_whole(*c.rule, v, out);
    return Verdict::Replace;
  }
  if (!p.scans() || c.kind == ValueKind::NoPii) return Verdict::Keep;
  if ((c.binary && c.kind == ValueKind::Other) || c.type_oid == kUnknownType) {
    // A binary value of a type masking does not read whole (arrays, records, domains, jsonb...),
    // or a value of unknown type: looked into down to its scalars; any finding makes it NULL.
    return unknown_has_pii(p, c.binary ? c.type_oid : kUnknownType, v, 0) ? Verdict::Null
                                                                          : Verdict::Keep;
  }
  std::string_view text = v;
  if (c.binary && (c.kind == ValueKind::Integer || c.kind == ValueKind::Numeric)) {
    const bool ok =
        c.kind == ValueKind::Integer ? binary_integer(v, decimal_) : binary_numeric(v, decimal_);
    if (!ok) return Verdict::Null;  // not what its type says: fail closed
    text = decimal_;
  }
  if (!p.detectors->has_custom() && !may_hold_builtin_pii(text)) return Verdict::Keep;
  if (!scan(p, text)) return Verdict::Null;
  if (found_.empty()) return Verdict::Keep;
  for (const PiiFinding& f : found_) {
    if (*p.action_for(f) == MaskAction::Null) return Verdict::Null;
  }
  switch (c.kind) {
    case ValueKind::Json:
      for (const PiiFinding& f : found_) {
        if (!inside_json_string(v, f.begin)) return Verdict::Null;
      }
      [[fallthrough]];
    case ValueKind::Text:
    case ValueKind::TextArray:
      replace_findings(p, v, out, false);
      return Verdict::Replace;
    default:
      return Verdict::Null;
  }
}

bool Masker::mask_row(const MaskProfile& p, const ResultPlan& plan, pr::Bytes row,
                      std::basic_string<std::byte>& out) {
  if (!plan.active || row.size() < 7) return false;
  const std::uint16_t n = get_u16(row.data() + 5);
  if (values_.size() < n) values_.resize(n);
  // Each value's verdict, kept only once one is not Keep (most rows keep every value).
  bool changed = false;
  const auto decided = [&](std::uint16_t c, Verdict v) {
    if (v == Verdict::Keep) return;
    if (!changed) verdicts_.assign(n, Verdict::Keep);
    changed = true;
    verdicts_[c] = v;
  };
  const bool blind_null = !plan.known && !p.columns.empty();
  MaskColumn blind;  // no RowDescription: looked into every way it could be read
  blind.type_oid = kUnknownType;
  const std::size_t known = plan.known ? plan.columns.size() : 0;
  // The common case decided here: a text value without a column rule that the gate finds clean
  // (what mask_value would decide first, without the call).
  const bool gate_decides = p.scans() && !p.detectors->has_custom();
  std::size_t i = 7;
  for (std::uint16_t c = 0; c < n; ++c) {
    if (row.size() - i < 4) return false;  // malformed: the client sees what the server sent
    const auto len = static_cast<std::int32_t>(get_u32(row.data() + i));
    i += 4;
    if (len < 0) continue;
    if (row.size() - i < static_cast<std::size_t>(len)) return false;
    const std::string_view v = as_chars(row.data() + i, static_cast<std::size_t>(len));
    i += static_cast<std::size_t>(len);
    if (blind_null) {
      decided(c, Verdict::Null);
      continue;
    }
    const MaskColumn& col = c < known ? plan.columns[c] : blind;
    if (!col.rule && (col.kind == ValueKind::NoPii ||
                      (gate_decides && !col.binary && col.type_oid != kUnknownType &&
                       !may_hold_builtin_pii(v)))) {
      continue;  // Keep
    }
    decided(c, mask_value(p, col, v, values_[c]));
  }
  if (!changed) return false;
  out.clear();
  out.push_back(std::byte{'D'});
  put_u32(out, 0);  // length, patched below
  out.push_back(row[5]);
  out.push_back(row[6]);
  i = 7;
  for (std::uint16_t c = 0; c < n; ++c) {
    const auto len = static_cast<std::int32_t>(get_u32(row.data() + i));
    i += 4;
    const std::size_t size = len < 0 ? 0 : static_cast<std::size_t>(len);
    switch (len < 0 ? Verdict::Keep : verdicts_[c]) {
      case Verdict::Keep:
        put_u32(out, static_cast<std::uint32_t>(len));
        out.append(row.data() + i, size);
        break;
      case Verdict::Null:
        put_u32(out, 0xffffffffu);
        ++counts_.values;
        ++counts_.nulled;
        break;
      case Verdict::Replace:
        put_u32(out, static_cast<std::uint32_t>(values_[c].size()));
        out.append(reinterpret_cast<const std::byte*>(values_[c].data()), values_[c].size());
        ++counts_.values;
        break;
    }
    i += size;
  }
  const auto total = static_cast<std::uint32_t>(out.size() - 1);
  for (int b = 0; b < 4; ++b) out[1 + b] = static_cast<std::byte>((total >> (24 - 8 * b)) & 0xff);
  return true;
}

bool Masker::text_has_pii(const MaskProfile& p, std::string_view text) {
  if (!p.detectors->has_custom() && !may_hold_builtin_pii(text)) return false;
  return !scan(p, text) || !found_.empty();  // a scan that fails counts as a finding
}

// `v` as bytes of type `oid` (kUnknownType: text or binary, which is not known): true when a
// detector finds anything in it, in any scalar it holds (array elements, record fields, however
// deep), or in what its bytes would be as a binary integer or numeric when its type is unknown.
bool Masker::unknown_has_pii(const MaskProfile& p, std::uint32_t oid, std::string_view v,
                             int depth) {
  if (depth > 16) return true;  // deeper than anything PostgreSQL sends: fail closed
  const ValueKind kind = oid == kUnknownType ? ValueKind::Other : value_kind(oid, true);
  std::string dec;
  switch (kind) {
    case ValueKind::NoPii:
      return false;
    case ValueKind::Integer:
      return !binary_integer(v, dec) || text_has_pii(p, dec);
    case ValueKind::Numeric:
      return !binary_numeric(v, dec) || text_has_pii(p, dec);
    case ValueKind::Text:
      return text_has_pii(p, v);
    default:
      break;
  }
  bool found = false;
  auto nested = [&](std::uint32_t type, std::string_view e) {
    found = found || unknown_has_pii(p, type, e, depth + 1);
  };
  if (for_each_array_element(v, nested) || for_each_record_field(v, nested)) return found;
  if (text_has_pii(p, v)) return true;
  if (oid != kUnknownType && kind != ValueKind::Other) return false;
  return (binary_integer(v, dec) && text_has_pii(p, dec)) ||
         (binary_numeric(v, dec) && text_has_pii(p, dec));
}

// One CopyData of a binary COPY: the file header (first message only), then a tuple of
// (int32 length, bytes) fields whose types COPY does not say; the trailer is int16 -1. A field
// with a finding becomes NULL.
bool Masker::mask_binary_copy(const MaskProfile& p, std::string_view in, bool& header,
                              std::string& out) {
  if (!p.scans()) return false;
  std::size_t pos = 0;
  static constexpr std::string_view kSignature("PGCOPY\n\377\r\n\0", 11);
  if (header) {
    if (in.size() < 19 || in.substr(0, 11) != kSignature) return mask_text(p, in, out, true);
    const std::uint32_t ext = detail::be32(in.data() + 15);
    if (in.size() - 19 < ext) return mask_text(p, in, out, true);
    pos = 19 + ext;
    header = false;
  }
  if (in.size() - pos < 2) return false;
  const auto nfields =
      static_cast<std::int16_t>(get_u16(reinterpret_cast<const std::byte*>(in.data() + pos)));
  if (nfields == -1) return false;  // the trailer
  std::size_t i = pos + 2;
  std::vector<bool> nulled(nfields > 0 ? static_cast<std::size_t>(nfields) : 0, false);
  bool changed = false;
  for (std::int16_t f = 0; f < nfields; ++f) {
    if (in.size() - i < 4) return mask_text(p, in, out, true);
    const auto len = static_cast<std::int32_t>(detail::be32(in.data() + i));
    i += 4;
    if (len < 0) continue;
    if (in.size() - i < static_cast<std::size_t>(len)) return mask_text(p, in, out, true);
    if (unknown_has_pii(p, kUnknownType, in.substr(i, static_cast<std::size_t>(len)), 0)) {
      nulled[static_cast<std::size_t>(f)] = true;
      changed = true;
    }
    i += static_cast<std::size_t>(len);
  }
  if (!changed) return false;
  out.assign(in.substr(0, pos + 2));
  i = pos + 2;
  for (std::int16_t f = 0; f < nfields; ++f) {
    const auto len = static_cast<std::int32_t>(detail::be32(in.data() + i));
    const std::size_t size = len < 0 ? 0 : static_cast<std::size_t>(len);
    if (nulled[static_cast<std::size_t>(f)]) {
      out.append("\xff\xff\xff\xff", 4);
      ++counts_.values;
      ++counts_.nulled;
    } else {
      out.append(in.substr(i, 4 + size));
    }
    i += 4 + size;
  }
  out.append(in.substr(i));
  return true;
}

bool Masker::mask_text(const MaskProfile& p, std::string_view in, std::string& out,
                       bool same_length) {
  if (!p.scans()) return false;
  if (!p.detectors->has_custom() && !may_hold_builtin_pii(in)) return false;
  if (!scan(p, in)) {
    out.assign(same_length ? std::string(in.size(), '*') : std::string(kRedacted));
    ++counts_.values;
    return true;
  }
  if (found_.empty()) return false;
  replace_findings(p, in, out, same_length);
  counts_.values += found_.size();
  return true;
}

bool Masker::mask_error(const MaskProfile& p, pr::Bytes m, std::basic_string<std::byte>& out) {
  if (!p.scans() || m.size() < 6) return false;
  std::size_t i = 5;
  bool changed = false;
  out.clear();
  out.push_back(m[0]);
  put_u32(out, 0);
  std::string masked;
  while (i < m.size() && m[i] != std::byte{0}) {
    const char code = static_cast<char>(m[i++]);
    std::string_view v;
    if (!take_cstring(m, i, v)) return false;
    out.push_back(static_cast<std::byte>(code));
    // Severity, code, position, and the server's source location carry no user data.
    const bool plain = std::string_view("SVCPpFLR").find(code) != std::string_view::npos;
    if (!plain && mask_text(p, v, masked)) {
      changed = true;
      v = masked;
    }
    out.append(reinterpret_cast<const std::byte*>(v.data()), v.size());
    out.push_back(std::byte{0});
  }
  if (!changed) return false;
  out.push_back(std::byte{0});
  const auto total = static_cast<std::uint32_t>(out.size() - 1);
  for (int b = 0; b < 4; ++b) out[1 + b] = static_cast<std::byte>((total >> (24 - 8 * b)) & 0xff);
  return true;
}

}  // namespace pgwarden::policy
