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

// A number in a card issuer's range (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
// Maestro): most Luhn-valid numbers that are not cards (ids, timestamps) start elsewhere.
bool card_issuer(const std::string& d) {
  const int two = (d[0] - '0') * 10 + (d[1] - '0');
  const int four = two * 100 + (d[2] - '0') * 10 + (d[3] - '0');
  return d[0] == '4' || (two >= 51 && two <= 55) || (four >= 2221 && four <= 2720) || two == 34 ||
         two == 37 || four == 6011 || two == 65 || (four >= 6440 && four <= 6499) ||
         (four >= 3528 && four <= 3589) || (four >= 3000 && four <= 3059) || two == 36 ||
         two == 38 || two == 39 || two == 62 || two == 50 || (two >= 56 && two <= 69);
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
  return d.size() >= 13 && d.size() <= 19 && card_issuer(d) && luhn_valid(d);
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

// Validates a candidate; may narrow it to the part that holds the finding.
bool valid(unsigned id, std::string_view v, std::size_t& b, std::size_t& e,
           const std::vector<std::string>& regions) {
  const std::string_view m = v.substr(b, e - b);
  switch (id) {
    case kCard: {
      // Part of a longer run of digits (the broad shape matches inside one): not a card.
      if ((b > 0 && is_digit(v[b - 1])) || (e < v.size() && is_digit(v[e]))) return false;
      if (inside_hex_token(v, b, e)) return false;
      const bool mixed =
          m.find("  ") != std::string_view::npos || m.find("--") != std::string_view::npos ||
          m.find(" -") != std::string_view::npos || m.find("- ") != std::string_view::npos;
      if (!mixed && card_digits(m) && stands_alone(v, b, e)) return true;
      // A number beside it with a space between ("qty 2 4111 1111 1111 1111"): the groups
      // between two spaces that make a card number on their own, leftmost and longest first.
      std::size_t starts[32], ends[32], n = 0;
      for (std::size_t i = 0; i < m.size() && n < 32;) {
        std::size_t j = i;
        while (j < m.size() && is_digit(m[j])) ++j;
        starts[n] = i;
        ends[n++] = j;
        i = j + 1;
      }
      for (std::size_t i = 0; i < n; ++i) {
        if (i > 0 && m[starts[i] - 1] != ' ') continue;
        for (std::size_t j = n; j-- > i;) {
          if (j + 1 < n && m[ends[j]] != ' ') continue;
          const std::string_view part = m.substr(starts[i], ends[j] - starts[i]);
          if (part.find('-') == std::string_view::npos && card_digits(part)) {
            e = b + ends[j];
            b += starts[i];
            return true;
          }
        }
      }
      return false;
    }
    case kSsn:
      return ssn_digits(digits_of(m)) && stands_alone(v, b, e);
    case kSsnKeyword: {
      // The match ends with the nine digits; the keyword before them is context, not the finding.
      if (m.size() < 9 || (e < v.size() && is_digit(v[e]))) return false;
      b = e - 9;
      return ssn_digits(std::string(v.substr(b, 9)));
    }
    case kEmail:
      return m.find('@') != std::string_view::npos && m.front() != '.' && m.front() != '@';
    case kPhoneIntl: {
      const std::size_t n = digits_of(m).size();
      return n >= 8 && n <= 15 && stands_alone(v, b, e) && phone_valid(m, true, regions);
    }
    case kPhoneUs: {
      const std::string d = digits_of(m);
      return d.size() == 10 && d[0] >= '2' && d[3] >= '2' && stands_alone(v, b, e) &&
             phone_valid(m, false, {"US"});
    }
    case kPhoneNational: {
      const std::size_t n = digits_of(m).size();
      return n >= 9 && n <= 12 && stands_alone(v, b, e) && phone_separators(m) &&
             phone_valid(m, false, regions);
    }
    case kIban:
      return m.find("  ") == std::string_view::npos && iban_valid(m);
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

bool is_word(char c) {
  return is_digit(c) || is_upper(c) || (c >= 'a' && c <= 'z') || c == '_';
}

// The precise condition, one pass: an '@' (e-mail), a '+' before a digit (international phone),
// 9 digits in one run of digits and " .()-/" (card, SSN, national phone), or two capitals after
// a word boundary followed by two digits (IBAN).
bool builtin_shape(std::string_view v) noexcept {
  std::size_t run_digits = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (is_digit(c)) {
      if (++run_digits >= 9) return true;
      continue;
    }
    if (c == ' ' || c == '.' || c == '(' || c == ')' || c == '-' || c == '/') continue;
    run_digits = 0;
    if (c == '@') return true;
    if (c == '+' && i + 1 < v.size() && is_digit(v[i + 1])) return true;
    if (is_upper(c) && i + 3 < v.size() && is_upper(v[i + 1]) && is_digit(v[i + 2]) &&
        is_digit(v[i + 3]) && (i == 0 || !is_word(v[i - 1]))) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool may_hold_builtin_pii(std::string_view value) noexcept {
  if (value.size() < 6) return false;  // "a@b.co" is the shortest finding
  // First a branch-free count (the compiler vectorises it), then the precise shape.
  std::size_t digits = 0, at = 0, upper = 0;
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    digits += static_cast<unsigned char>(u - '0') < 10;
    upper += static_cast<unsigned char>(u - 'A') < 26;
    at += u == '@';
  }
  if (at == 0 && digits < 8 && (value.size() < 15 || upper < 2 || digits < 2)) return false;
  return builtin_shape(value);
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
      R"([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b)",
      R"(\+\d[\d .()-]{5,20}\d\b)",
      R"((?:\(\d{3}\) ?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b)",
      R"(\b[A-Z]{2}\d{2}[A-Z0-9 ]{10,40}[A-Z0-9]\b)",
      R"((?:\b|_)(?:ssns?|ss#|ss ?no|social security(?: number| no)?|soc\.? ?sec\.?(?: no| number| #)?|taxpayer id(?: number)?)[^A-Za-z0-9]{0,6}\d{9})",
      R"(\b0\d[\d ./-]{6,16}\d\b)",
  };
  std::vector<unsigned> ids = {kCard,    kSsn,  kEmail,      kPhoneIntl,
                               kPhoneUs, kIban, kSsnKeyword, kPhoneNational};
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
  for (std::size_t i = 0; i < candidates_.size(); ++i) {
    std::size_t b = candidates_[i].begin, e = candidates_[i].end;
    if (!valid(ids_[i], value, b, e, detectors.phone_regions())) continue;
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
