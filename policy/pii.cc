#include "policy/pii.h"

#include <hs/hs.h>

#include <algorithm>

#include "policy/phone.h"

namespace pgwarden::policy {

namespace {

enum Pattern : unsigned {
  kCard = 0,
  kSsn,
  kEmail,
  kPhoneIntl,
  kPhoneUs,
  kIban,
  kSsnKeyword,     // nine digits without separators after "SSN", "social security"...
  kPhoneNational,  // a trunk prefix 0 and 8 to 15 more digits (GB, DE, FR and most others)
  kPhoneIntl00,    // the international prefix 00 instead of +
  kBuiltins,
  kCustomBase = 100,
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}

// The match must be a whole group of digits: not glued by a separator to more digits (UUIDs,
// long account numbers with dashes, timestamps).
bool stands_alone(std::string_view v, std::size_t b, std::size_t e) {
  if (b >= 2 && (v[b - 1] == '-' || v[b - 1] == ' ' || v[b - 1] == '.') && is_digit(v[b - 2])) {
    return false;
  }
  if (e + 1 < v.size() && (v[e] == '-' || v[e] == ' ' || v[e] == '.') && is_digit(v[e + 1])) {
    return false;
  }
  return true;
}

// A number of a card issuer's range and one of the lengths it issues (Visa, Mastercard, Amex,
// Discover, JCB, Diners, UnionPay, Maestro): most Luhn-valid numbers that are not cards (IMEIs,
// SIRETs, EAN-13 codes, ids, timestamps) start elsewhere or have another length.
bool card_issuer(const std::string& d) {
  const std::size_t n = d.size();
  const int two = (d[0] - '0') * 10 + (d[1] - '0');
  const int three = two * 10 + (d[2] - '0');
  const int four = three * 10 + (d[3] - '0');
  if (d[0] == '4') return n == 13 || n == 16 || n == 19;                           // Visa
  if (two == 34 || two == 37) return n == 15;                                      // Amex
  if ((two >= 51 && two <= 55) || (four >= 2221 && four <= 2720)) return n == 16;  // Mastercard
  if ((three >= 300 && three <= 305) || two == 36 || two == 38 || two == 39) return n >= 14;
  if (four == 6011 || two == 65 || (four >= 6440 && four <= 6499)) return n >= 16;  // Discover
  if ((four >= 3528 && four <= 3589) || two == 62) return n >= 16;                  // JCB, UnionPay
  return (two == 50 || (two >= 56 && two <= 69)) && n >= 13;                        // Maestro
}

// An EAN-13 barcode's check digit holds: a 13-digit number that is a product code.
bool ean13(const std::string& d) {
  if (d.size() != 13) return false;
  int sum = 0;
  for (std::size_t i = 0; i < 12; ++i) sum += (d[i] - '0') * (i % 2 == 0 ? 1 : 3);
  return (10 - sum % 10) % 10 == d[12] - '0';
}

std::string digits_of(std::string_view s) {
  std::string d;
  for (const char c : s) {
    if (is_digit(c)) d.push_back(c);
  }
  return d;
}

bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_alnum(char c) {
  return is_digit(c) || is_upper(c) || (c >= 'a' && c <= 'z');
}

// Digits glued to letters are a card number written into a word ("card4111...", "x4111...y"),
// unless the word is a long run of hex digits: a hash or a UUID without dashes holds runs of
// decimal digits by chance.
bool inside_hex_token(std::string_view v, std::size_t b, std::size_t e) {
  std::size_t lo = b, hi = e;
  while (lo > 0 && is_alnum(v[lo - 1])) --lo;
  while (hi < v.size() && is_alnum(v[hi])) ++hi;
  if (lo == b && hi == e) return false;
  for (std::size_t i = lo; i < hi; ++i) {
    if (!is_hex(v[i])) return false;
  }
  return hi - lo >= 20;
}

bool card_digits(std::string_view m) {
  const std::string d = digits_of(m);
  return d.size() >= 13 && d.size() <= 19 && card_issuer(d) && luhn_valid(d) && !ean13(d);
}

// Groups written the way cards are: one run, 4-4-4-4 (the last group 1 to 4 digits), or Amex's
// and Diners' 4-6-5 and 4-6-4; separated by `sep` (' ' or '-').
bool card_grouping(std::string_view part, char sep) {
  std::size_t lens[8], n = 0, run = 0;
  for (const char c : part) {
    if (c == sep) {
      if (run == 0 || n == 7) return false;
      lens[n++] = run;
      run = 0;
    } else if (is_digit(c)) {
      ++run;
    } else {
      return false;
    }
  }
  if (run == 0) return false;
  lens[n++] = run;
  if (n == 1) return true;
  if (n == 3 && lens[0] == 4 && lens[1] == 6 && (lens[2] == 5 || lens[2] == 4)) return true;
  for (std::size_t i = 0; i + 1 < n; ++i) {
    if (lens[i] != 4) return false;
  }
  return lens[n - 1] >= 1 && lens[n - 1] <= 4;
}

// The card number in a candidate of the broad shape (digits, spaces, dashes). The candidate may
// start or end inside a longer number (Hyperscan reports the leftmost start for each end): that
// partial number is dropped, and what a space sets apart from other numbers ("qty 2 4111 1111
// 1111 1111", "2026-11-21 4111111111111111") is looked at on its own. [b, e) is narrowed to it.
bool find_card(std::string_view v, std::size_t& b, std::size_t& e) {
  std::string_view m = v.substr(b, e - b);
  std::size_t lo = 0, hi = m.size();
  if (b > 0 && is_digit(v[b - 1])) {  // cut inside a number: start after it
    lo = m.find(' ');
    if (lo == std::string_view::npos) return false;
    ++lo;
  }
  if (e < v.size() && is_digit(v[e])) {
    hi = m.rfind(' ');
    if (hi == std::string_view::npos || hi <= lo) return false;
  }
  // Words: runs without spaces. A window of consecutive words one space apart, written as one
  // card (one run, space groups, or dash groups inside one word), longest from the left first.
  std::size_t starts[32], ends[32], n = 0;
  for (std::size_t i = lo; i < hi && n < 32;) {
    std::size_t j = i;
    while (j < hi && m[j] != ' ') ++j;
    if (j > i) {
      starts[n] = i;
      ends[n++] = j;
    }
    i = j + 1;
  }
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = n; j-- > i;) {
      const std::string_view part = m.substr(starts[i], ends[j] - starts[i]);
      const bool spaced = i != j;
      if (spaced && part.find('-') != std::string_view::npos) continue;
      if (!card_grouping(part, spaced ? ' ' : '-') || !card_digits(part)) continue;
      const std::size_t nb = b + starts[i], ne = b + ends[j];
      // Glued by a dash or dot to more digits (an account number, a date): not a card.
      if (nb >= 2 && (v[nb - 1] == '-' || v[nb - 1] == '.') && is_digit(v[nb - 2])) continue;
      if (ne + 1 < v.size() && (v[ne] == '-' || v[ne] == '.') && is_digit(v[ne + 1])) continue;
      if (inside_hex_token(v, nb, ne)) continue;
      b = nb;
      e = ne;
      return true;
    }
  }
  return false;
}

bool ssn_digits(const std::string& d) {
  if (d.size() != 9) return false;
  const int area = std::stoi(d.substr(0, 3));
  return area != 0 && area != 666 && area < 900 && d.substr(3, 2) != "00" && d.substr(5) != "0000";
}

// Separators of a national phone number: at most one between groups, of one kind.
bool phone_separators(std::string_view m) {
  char sep = 0;
  std::size_t count = 0;
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (is_digit(m[i])) continue;
    if (i > 0 && !is_digit(m[i - 1])) return false;
    if (sep != 0 && m[i] != sep) return false;
    sep = m[i];
    ++count;
  }
  return count <= 4;
}

// "tel", "phone", "mobile"... within the 24 bytes before `b`, in any case.
bool phone_keyword_before(std::string_view v, std::size_t b) {
  const std::size_t from = b > 24 ? b - 24 : 0;
  std::string before(v.substr(from, b - from));
  for (char& c : before) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  for (const char* k : {"tel", "phone", "mobil", "cell", "fax", "handy", "portable", "gsm"}) {
    if (before.find(k) != std::string::npos) return true;
  }
  return false;
}

// Validates a candidate; may narrow it to the part that holds the finding.
bool valid(unsigned id, std::string_view v, std::size_t& b, std::size_t& e,
           const std::vector<std::string>& regions) {
  const std::string_view m = v.substr(b, e - b);
  switch (id) {
    case kCard:
      return find_card(v, b, e);
    case kSsn:
      return ssn_digits(digits_of(m)) && stands_alone(v, b, e);
    case kSsnKeyword: {
      // The match ends with the number (3-2-4 digits, separators optional); the keyword before it
      // is context, not the finding.
      if (e < v.size() && is_digit(v[e])) return false;
      std::size_t i = e, digits = 0;
      while (i > b && digits < 9) {
        if (is_digit(v[i - 1])) {
          ++digits;
          --i;
        } else if (digits > 0 && i >= b + 2 && is_digit(v[i - 2])) {
          --i;  // a separator between digits
        } else {
          break;
        }
      }
      if (digits != 9 || (i > 0 && is_digit(v[i - 1]))) return false;
      b = i;
      return ssn_digits(digits_of(v.substr(b, e - b)));
    }
    case kEmail:
      // The top-level domain ends where no letter follows ("bob@example.com_deleted" too).
      if (e < v.size() && ((v[e] >= 'a' && v[e] <= 'z') || is_upper(v[e]))) return false;
      return m.find('@') != std::string_view::npos && m.front() != '.' && m.front() != '@';
    case kPhoneIntl: {
      const std::size_t n = digits_of(m).size();
      // A signed decimal (an ISO 6709 coordinate such as +49.4521018) is no number to call.
      const std::size_t dot = m.find('.');
      if (dot != std::string_view::npos && dot <= 4 &&
          m.find_first_of(" ()-", 1) == std::string_view::npos &&
          m.find('.', dot + 1) == std::string_view::npos) {
        return false;
      }
      // A '+' says where the number starts: a number after it with a space between is another.
      const bool glued = e + 1 < v.size() && (v[e] == '-' || v[e] == '.') && is_digit(v[e + 1]);
      return n >= 8 && n <= 15 && !glued && phone_valid(m, true, regions);
    }
    case kPhoneIntl00: {
      const std::size_t n = digits_of(m).size();
      if (n < 10 || n > 17 || !stands_alone(v, b, e)) return false;
      std::string plus(1, '+');
      plus.append(m.data() + 2, m.size() - 2);
      return phone_valid(plus, true, regions);
    }
    case kPhoneUs: {
      const std::string d = digits_of(m);
      return d.size() == 10 && d[0] >= '2' && d[3] >= '2' && stands_alone(v, b, e) &&
             phone_valid(m, false, {"US"});
    }
    case kPhoneNational: {
      const std::size_t n = digits_of(m).size();
      // Unseparated, a zero-led number is as often an id, an ISBN or a routing number: it counts
      // as a phone number only after a word that says so.
      if (n == m.size() && !phone_keyword_before(v, b)) return false;
      return n >= 9 && n <= 12 && stands_alone(v, b, e) && phone_separators(m) &&
             phone_valid(m, false, regions);
    }
    case kIban: {
      if (m.find("  ") == std::string_view::npos && iban_valid(m)) return true;
      // Another code before it (a VAT id: "DE123456789 DE89 3704..."): from each later start.
      for (std::size_t i = 1; i + 4 <= m.size(); ++i) {
        if (m[i - 1] != ' ' || !is_upper(m[i]) || !is_upper(m[i + 1]) || !is_digit(m[i + 2]) ||
            !is_digit(m[i + 3])) {
          continue;
        }
        const std::string_view rest = m.substr(i);
        if (rest.find("  ") == std::string_view::npos && iban_valid(rest)) {
          b += i;
          return true;
        }
      }
      return false;
    }
    default:
      return true;  // custom patterns: the expression is the validator
  }
}

PiiKind kind_of(unsigned id) {
  switch (id) {
    case kCard:
      return PiiKind::CardNumber;
    case kSsn:
    case kSsnKeyword:
      return PiiKind::Ssn;
    case kEmail:
      return PiiKind::Email;
    case kPhoneIntl:
    case kPhoneUs:
    case kPhoneNational:
    case kPhoneIntl00:
      return PiiKind::Phone;
    case kIban:
      return PiiKind::Iban;
    default:
      return PiiKind::Custom;
  }
}

struct ScanContext {
  std::vector<PiiFinding>* candidates;
  std::vector<unsigned>* ids;
};

int on_candidate(unsigned int id, unsigned long long from, unsigned long long to, unsigned int,
                 void* ctx) {
  auto* c = static_cast<ScanContext*>(ctx);
  // Past the bound the scan stops and the value is not scanned: masked whole (fail closed).
  if (c->candidates->size() >= PiiScanner::kMaxCandidates) return 1;
  c->candidates->push_back(PiiFinding{static_cast<PiiKind>(0), static_cast<std::size_t>(from),
                                      static_cast<std::size_t>(to)});
  c->ids->push_back(id);
  return 0;
}

}  // namespace

const char* pii_kind_name(PiiKind k) {
  switch (k) {
    case PiiKind::CardNumber:
      return "card_number";
    case PiiKind::Ssn:
      return "ssn";
    case PiiKind::Email:
      return "email";
    case PiiKind::Phone:
      return "phone";
    case PiiKind::Iban:
      return "iban";
    case PiiKind::Custom:
      return "custom";
  }
  return "?";
}

namespace {

// The ASCII character a UTF-8 look-alike at v[i] stands for (its length in `len`), or 0.
char lookalike_at(std::string_view v, std::size_t i, std::size_t& len) noexcept {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(v[i + k]); };
  const unsigned char b0 = at(0);
  if (b0 == 0xC2 && i + 1 < v.size() && at(1) == 0xA0) {
    len = 2;
    return ' ';  // U+00A0 no-break space
  }
  if (i + 2 >= v.size() || (b0 != 0xE2 && b0 != 0xE3 && b0 != 0xEF)) return 0;
  len = 3;
  const unsigned char b1 = at(1), b2 = at(2);
  if (b0 == 0xE2 && b1 == 0x80) {
    if ((b2 >= 0x80 && b2 <= 0x8A) || b2 == 0xAF) return ' ';  // U+2000-200A, U+202F
    if (b2 >= 0x90 && b2 <= 0x95) return '-';                  // U+2010-2015 dashes
  }
  if (b0 == 0xE2 && b1 == 0x88 && b2 == 0x92) return '-';  // U+2212 minus
  if (b0 == 0xE3 && b1 == 0x80 && b2 == 0x80) return ' ';  // U+3000 ideographic space
  if (b0 == 0xEF && b1 == 0xBC) {
    if (b2 >= 0x90 && b2 <= 0x99) return static_cast<char>('0' + (b2 - 0x90));  // U+FF10-FF19
    if (b2 == 0x8B) return '+';
    if (b2 == 0xA0) return '@';
  }
  return 0;
}

int hex_value(char c) noexcept {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The printable ASCII character an escape at v[i] stands for (its length in `len`), or 0: URL
// encoding (%40), HTML character references (&#64; &#x40;), JSON and JavaScript \u0040.
char escape_at(std::string_view v, std::size_t i, std::size_t& len) noexcept {
  unsigned code = 0;
  if (v[i] == '%' && i + 2 < v.size()) {
    const int hi = hex_value(v[i + 1]), lo = hex_value(v[i + 2]);
    if (hi < 0 || lo < 0) return 0;
    code = static_cast<unsigned>(hi * 16 + lo);
    len = 3;
  } else if (v[i] == '\\' && i + 5 < v.size() && v[i + 1] == 'u') {
    for (std::size_t k = 2; k < 6; ++k) {
      const int h = hex_value(v[i + k]);
      if (h < 0) return 0;
      code = code * 16 + static_cast<unsigned>(h);
    }
    len = 6;
  } else if (v[i] == '&' && i + 3 < v.size() && v[i + 1] == '#') {
    const bool hex = v[i + 2] == 'x' || v[i + 2] == 'X';
    std::size_t k = i + (hex ? 3 : 2);
    const std::size_t start = k;
    while (k < v.size() && k - start < 6 && (hex ? hex_value(v[k]) >= 0 : is_digit(v[k]))) {
      code = code * (hex ? 16 : 10) + static_cast<unsigned>(hex_value(v[k]));
      ++k;
    }
    if (k == start || k >= v.size() || v[k] != ';') return 0;
    len = k + 1 - i;
  } else {
    return 0;
  }
  return code >= 0x20 && code < 0x7F ? static_cast<char>(code) : 0;
}

// A look-alike or an escape at v[i] (see above), or 0.
char decoded_at(std::string_view v, std::size_t i, std::size_t& len) noexcept {
  const char c = v[i];
  if (c == '%' || c == '&' || c == '\\') return escape_at(v, i, len);
  if (static_cast<unsigned char>(c) >= 0xC2) return lookalike_at(v, i, len);
  return 0;
}

}  // namespace

bool has_lookalikes(std::string_view value) noexcept {
  for (std::size_t i = 0; i < value.size(); ++i) {
    std::size_t len = 0;
    if (decoded_at(value, i, len) != 0) return true;
  }
  return false;
}

bool luhn_valid(std::string_view digits) {
  int sum = 0;
  bool dbl = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (!is_digit(*it)) return false;
    int d = *it - '0';
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return !digits.empty() && sum % 10 == 0;
}

bool iban_valid(std::string_view iban) {
  std::string s;
  for (const char c : iban) {
    if (c != ' ') s.push_back(c);
  }
  if (s.size() < 15 || s.size() > 34 || !is_upper(s[0]) || !is_upper(s[1]) || !is_digit(s[2]) ||
      !is_digit(s[3])) {
    return false;
  }
  // Move the first four characters to the end; letters are 10..35; the number mod 97 is 1.
  const std::string r = s.substr(4) + s.substr(0, 4);
  int mod = 0;
  for (const char c : r) {
    if (is_digit(c)) {
      mod = (mod * 10 + (c - '0')) % 97;
    } else if (is_upper(c)) {
      const int v = c - 'A' + 10;
      mod = (mod * 100 + v) % 97;
    } else {
      return false;
    }
  }
  return mod == 1;
}

protocol::Result<std::shared_ptr<const PiiDetectors>> PiiDetectors::build(
    const std::vector<std::string>& custom, const std::vector<std::string>& phone_regions) {
  // Broad shapes (cheap for Hyperscan's start-of-match tracking); the validators decide.
  std::vector<std::string> exprs = {
      R"(\d[\d -]{11,22}\d)",
      R"(\b\d{3}[- ]\d{2}[- ]\d{4}\b)",
      R"([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24})",
      R"(\+\d[\d .()-]{5,20}\d\b)",
      R"((?:\(\d{3}\) ?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b)",
      R"(\b[A-Z]{2}\d{2}[A-Z0-9 ]{10,40}[A-Z0-9]\b)",
      R"((?:ssns?(?:[ _-]?(?:no|number|num|nr))?|ss#|social[ _-]?security(?:[ _-]?(?:number|no|num|nr))?|soc\.? ?sec\.?(?: no| number| #)?|taxpayer[ _-]?id(?:[ _-]?number)?)[^0-9]{0,12}\d{3}[-. ]?\d{2}[-. ]?\d{4})",
      R"(\b0\d[\d ./-]{6,16}\d\b)",
      R"(\b00[1-9][\d .()-]{6,20}\d\b)",
  };
  std::vector<unsigned> ids = {kCard, kSsn,        kEmail,         kPhoneIntl,  kPhoneUs,
                               kIban, kSsnKeyword, kPhoneNational, kPhoneIntl00};
  for (std::size_t i = 0; i < custom.size(); ++i) {
    exprs.push_back(custom[i]);
    ids.push_back(kCustomBase + static_cast<unsigned>(i));
  }
  std::vector<const char*> patterns;
  std::vector<unsigned> flags;
  for (std::size_t i = 0; i < exprs.size(); ++i) {
    patterns.push_back(exprs[i].c_str());
    flags.push_back(HS_FLAG_SOM_LEFTMOST | (ids[i] == kSsnKeyword ? HS_FLAG_CASELESS : 0u));
  }
  auto d = std::shared_ptr<PiiDetectors>(new PiiDetectors());
  d->custom_ = custom.size();
  d->regions_ = phone_regions.empty() ? default_phone_regions() : phone_regions;
  hs_compile_error_t* err = nullptr;
  if (hs_compile_multi(patterns.data(), flags.data(), ids.data(),
                       static_cast<unsigned>(patterns.size()), HS_MODE_BLOCK, nullptr, &d->db_,
                       &err) != HS_SUCCESS) {
    const int bad = err != nullptr ? err->expression : -1;
    const std::string why = err != nullptr ? err->message : "unknown error";
    hs_free_compile_error(err);
    return protocol::Error{protocol::Errc::Rejected,
                           (bad >= static_cast<int>(kBuiltins)
                                ? "custom pattern " + std::to_string(bad - kBuiltins) + ": "
                                : std::string("detector: ")) +
                               why};
  }
  return std::shared_ptr<const PiiDetectors>(std::move(d));
}

PiiDetectors::~PiiDetectors() {
  hs_free_database(db_);
}

PiiScanner::~PiiScanner() {
  hs_free_scratch(scratch_);
}

bool PiiScanner::scan(std::string_view value, const PiiDetectors& detectors,
                      std::vector<PiiFinding>& out) {
  if (!has_lookalikes(value)) return scan_ascii(value, detectors, out);
  // Scanned as read with look-alikes and escapes decoded; findings map back to the value's bytes.
  normalized_.clear();
  origin_.clear();
  for (std::size_t i = 0; i < value.size();) {
    std::size_t len = 1;
    const char c = decoded_at(value, i, len);
    normalized_.push_back(c != 0 ? c : value[i]);
    origin_.push_back(i);
    i += c != 0 ? len : 1;
  }
  origin_.push_back(value.size());
  const bool ok = scan_ascii(normalized_, detectors, out);
  if (ok) {
    for (PiiFinding& f : out) {
      f.begin = origin_[f.begin];
      f.end = origin_[f.end];
      f.lookalike = true;
    }
  }
  if (origin_.capacity() > kKeepLookalikeMap) {  // nine bytes per byte of value: not kept
    decltype(normalized_)().swap(normalized_);
    decltype(origin_)().swap(origin_);
  }
  return ok;
}

bool PiiScanner::scan_ascii(std::string_view value, const PiiDetectors& detectors,
                            std::vector<PiiFinding>& out) {
  out.clear();
  if (scratch_for_ != detectors.db()) {
    if (hs_alloc_scratch(detectors.db(), &scratch_) != HS_SUCCESS) return false;
    scratch_for_ = detectors.db();
  }
  candidates_.clear();
  ids_.clear();
  ScanContext ctx{&candidates_, &ids_};
  if (hs_scan(detectors.db(), value.data(), static_cast<unsigned>(value.size()), 0, scratch_,
              on_candidate, &ctx) != HS_SUCCESS) {
    return false;
  }
  if (candidates_.empty()) return true;
  std::vector<PiiFinding>& good = valid_;
  good.clear();
  // Longest first for each start: a phone number's shorter readings (Hyperscan reports every
  // end) need no validation of their own once a longer one holds (libphonenumber is the
  // detectors' slowest step).
  order_.resize(candidates_.size());
  for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
  std::sort(order_.begin(), order_.end(), [&](std::size_t x, std::size_t y) {
    const PiiFinding& a = candidates_[x];
    const PiiFinding& b = candidates_[y];
    return a.begin != b.begin ? a.begin < b.begin : a.end > b.end;
  });
  std::size_t phone_from = 0, phone_to = 0;  // the last phone number found
  for (const std::size_t i : order_) {
    std::size_t b = candidates_[i].begin, e = candidates_[i].end;
    const bool phone = kind_of(ids_[i]) == PiiKind::Phone;
    if (phone && b >= phone_from && e <= phone_to) continue;
    if (!valid(ids_[i], value, b, e, detectors.phone_regions())) continue;
    if (phone) {
      phone_from = b;
      phone_to = e;
    }
    const auto custom =
        static_cast<std::uint16_t>(ids_[i] >= kCustomBase ? ids_[i] - kCustomBase : 0);
    good.push_back({kind_of(ids_[i]), b, e, custom});
  }
  // Leftmost first, longest first; keep those that do not overlap what is kept.
  std::sort(good.begin(), good.end(), [](const PiiFinding& a, const PiiFinding& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end > b.end;
  });
  std::size_t covered = 0;
  for (const PiiFinding& f : good) {
    if (!out.empty() && f.begin < covered) continue;
    out.push_back(f);
    covered = f.end;
  }
  return true;
}

}  // namespace pgwarden::policy
