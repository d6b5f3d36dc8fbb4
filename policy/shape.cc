// The shape of a statement's text: its numbers replaced, for the caches of the policy engine and
// of masking's reads (see shape_of in policy/rules.h).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "policy/rules.h"

namespace pgwarden::policy {

namespace {

// What shape_of does at a byte: copy it, give up, or look closer.
enum ShapeByte : std::uint8_t { kCopy, kUnsafe, kDigit, kDot, kDollar, kDash, kSlash };

constexpr std::array<std::uint8_t, 256> kShapeBytes = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    std::uint8_t k = kCopy;
    if (c >= 0x80 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == '\'' || c == '"' ||
        c == '\\' || c == '`') {
      k = kUnsafe;
    } else if (c >= '0' && c <= '9') {
      k = kDigit;
    } else if (c == '.') {
      k = kDot;
    } else if (c == '$') {
      k = kDollar;
    } else if (c == '-') {
      k = kDash;
    } else if (c == '/') {
      k = kSlash;
    }
    t[static_cast<std::size_t>(c)] = k;
  }
  return t;
}();

constexpr std::array<bool, 256> kIdentBytes = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[static_cast<std::size_t>(c)] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                                     (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
  }
  return t;
}();

}  // namespace

// A key shared by texts that differ only in numeric constants: each number that starts a token
// becomes one placeholder byte. Only for texts where that is unambiguous without a full lexer:
// false when the text has quotes, dollar quoting, comments, backslashes, control or non-ASCII
// bytes (then only the exact text is cached). One pass over the text, a table lookup per byte;
// the shape is never longer than the text, so it is written in place.
bool shape_of(std::string_view sql, std::string& out, bool* number_before_d, std::size_t* digits,
              bool* signed_exponent) {
  const std::size_t n = sql.size();
  bool before_d = false, plus = false;
  std::size_t digit_count = 0;  // every digit goes by the switch below (the fast path skips none)
  const auto* s = reinterpret_cast<const unsigned char*>(sql.data());
  auto digit = [&](std::size_t i) { return i < n && s[i] >= '0' && s[i] <= '9'; };
  auto after_ident = [&](std::size_t i) { return i > 0 && kIdentBytes[s[i - 1]]; };
  out.resize(n);
  char* o = out.data();  // never past out.data() + i: a 16-byte store at o stays inside
  std::size_t i = 0;
#if defined(__SSE2__)
  // The bytes that need a closer look, as a mask (a superset of what is not kCopy): below 0x20 or
  // above 0x7f, "#$%&' (0x22-0x27), -./0-9 (0x2d-0x39), backslash or backquote. A range is one
  // signed comparison after a shift that puts its first byte at -128.
  const __m128i space = _mm_set1_epi8(0x20), backslash = _mm_set1_epi8('\\'),
                backquote = _mm_set1_epi8('`');
  const __m128i quotes_shift = _mm_set1_epi8(static_cast<char>(0x80 - 0x22)),
                quotes_end = _mm_set1_epi8(static_cast<char>(-128 + 6));
  const __m128i numbers_shift = _mm_set1_epi8(static_cast<char>(0x80 - 0x2d)),
                numbers_end = _mm_set1_epi8(static_cast<char>(-128 + 13));
  const auto look_at = [&](std::size_t at) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + at));
    const __m128i odd = _mm_or_si128(
        _mm_or_si128(_mm_cmplt_epi8(x, space),
                     _mm_cmplt_epi8(_mm_add_epi8(x, quotes_shift), quotes_end)),
        _mm_or_si128(_mm_cmplt_epi8(_mm_add_epi8(x, numbers_shift), numbers_end),
                     _mm_or_si128(_mm_cmpeq_epi8(x, backslash), _mm_cmpeq_epi8(x, backquote))));
    return std::pair{x, static_cast<unsigned>(_mm_movemask_epi8(odd))};
  };
#endif
  while (i < n) {
#if defined(__SSE2__)
    if (i + 16 <= n) {
      // 16 bytes at a time while none needs a closer look.
      const auto [x, look] = look_at(i);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), x);
      const std::size_t plain = look == 0 ? 16 : static_cast<std::size_t>(__builtin_ctz(look));
      o += plain;
      i += plain;
      if (look == 0) continue;
    }
#endif
    const unsigned char c = s[i];
    bool number = false;
    switch (kShapeBytes[c]) {
      case kCopy:
        break;
      case kUnsafe:
        out.clear();
        return false;
      case kDigit:
        number = !after_ident(i);
        digit_count += !number;  // a number's digits are counted with it
        break;
      case kDot:
        number = digit(i + 1) && !after_ident(i);
        break;
      case kDollar:
        if (!digit(i + 1)) {  // dollar quoting
          out.clear();
          return false;
        }
        break;
      case kDash:
      case kSlash:
        if (i + 1 < n && s[i + 1] == (c == '-' ? '-' : '*')) {  // a comment
          out.clear();
          return false;
        }
        break;
    }
    if (!number) {
      *o++ = static_cast<char>(c);
      ++i;
      continue;
    }
    std::size_t j = i;
    for (; j < n; ++j) {
      if (static_cast<unsigned>(s[j] - '0') <= 9u) {
        ++digit_count;
      } else if (s[j] != '.') {
        break;
      }
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
      std::size_t k = j + 1;
      if (k < n && (s[k] == '+' || s[k] == '-')) ++k;
      if (digit(k)) {
        plus = plus || s[k - 1] == '+';
        j = k;
        while (digit(j)) ++j, ++digit_count;
      }
    }
    *o++ = '\x01';
    before_d = before_d || (j < n && (s[j] | 0x20) == 'd');
    i = j;
  }
  out.resize(static_cast<std::size_t>(o - out.data()));
  if (number_before_d != nullptr) *number_before_d = before_d;
  if (digits != nullptr) *digits = digit_count;
  if (signed_exponent != nullptr) *signed_exponent = plus;
  return true;
}

bool shape_free_of_builtin_pii(std::string_view shape) noexcept {
  auto upper = [&](std::size_t i) { return shape[i] >= 'A' && shape[i] <= 'Z'; };
  auto digit = [&](std::size_t i) { return shape[i] >= '0' && shape[i] <= '9'; };
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const auto c = static_cast<unsigned char>(shape[i]);
    if (c == '@' || c == '+' || c == '%' || c == '&' || c == '\\' || c >= 0x80) return false;
    if (i + 3 < shape.size() && upper(i) && upper(i + 1) && digit(i + 2) && digit(i + 3)) {
      return false;
    }
  }
  return true;
}

}  // namespace pgwarden::policy
