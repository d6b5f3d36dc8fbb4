// The per-value gate in front of the Hyperscan scan (see may_hold_builtin_pii in pii.h): a clean
// value must cost far less than a scan, since most values of most rows are clean. The gate reads
// a value 16 bytes at a time with SSE2 (the x86-64 baseline), turns each byte class into bits of a
// 64-bit mask per 64 bytes, and decides from the masks with the POPCNT instruction (every x86-64
// CPU since 2008; checked once at start, the scalar gate otherwise). The scalar reference below
// defines what the gate computes, and a unit test holds the two equal.
#if defined(__x86_64__)
#include <tmmintrin.h>
#endif

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

#include "policy/pii.h"

namespace pgwarden::policy {

namespace {

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}
bool is_upper(char c) noexcept {
  return c >= 'A' && c <= 'Z';
}
bool is_word(char c) noexcept {
  return is_digit(c) || is_upper(c) || (c >= 'a' && c <= 'z') || c == '_';
}
bool is_separator(char c) noexcept {
  return c == ' ' || c == '.' || c == '(' || c == ')' || c == '-' || c == '/';
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
    if (is_separator(c)) continue;
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

// No built-in detector can match: no '@', fewer than 8 digits, and no room for an IBAN.
bool too_plain(std::size_t size, std::size_t digits, std::size_t upper, std::size_t at) noexcept {
  return at == 0 && digits < 8 && (size < 15 || upper < 2 || digits < 2);
}

#if defined(__x86_64__)
#define PGW_GATE_INLINE inline __attribute__((always_inline))

// What follows runs only where the CPU has SSSE3 and POPCNT (every x86-64 CPU since 2008; checked
// once at start, the scalar gate otherwise).
#pragma GCC push_options
#pragma GCC target("ssse3,popcnt")

// A byte's classes are the AND of two table lookups (PSHUFB), by its low and by its high nibble:
// a class bit survives when both nibbles allow it. Bytes from 0x80 up are in none (they are
// told apart by their top bit).
enum : std::uint8_t {
  kDigit = 1,     // 0x30-0x39
  kSep = 2,       // 0x20 0x28 0x29 0x2D 0x2E 0x2F: " ()-./"
  kPlus = 4,      // 0x2B
  kUpper4 = 8,    // 0x41-0x4F
  kUpper5 = 16,   // 0x50-0x5A
  kAt = 32,       // 0x40
  kEscape2 = 64,  // 0x25 0x26: "%&"
  kEscape5 = 128  // 0x5C: backslash
};
constexpr std::uint8_t low_nibble_classes(unsigned l) {
  return static_cast<std::uint8_t>(
      (l <= 9 ? kDigit : 0) | (l == 0 || l == 8 || l == 9 || l >= 0xD ? kSep : 0) |
      (l == 0xB ? kPlus : 0) | (l >= 1 ? kUpper4 : 0) | (l <= 0xA ? kUpper5 : 0) |
      (l == 0 ? kAt : 0) | (l == 5 || l == 6 ? kEscape2 : 0) | (l == 0xC ? kEscape5 : 0));
}
constexpr std::uint8_t high_nibble_classes(unsigned h) {
  switch (h) {
    case 2:
      return kSep | kPlus | kEscape2;
    case 3:
      return kDigit;
    case 4:
      return kUpper4 | kAt;
    case 5:
      return kUpper5 | kEscape5;
    default:
      return 0;
  }
}
template <std::uint8_t (*F)(unsigned), std::size_t... I>
PGW_GATE_INLINE __m128i table(std::index_sequence<I...>) noexcept {
  return _mm_setr_epi8(static_cast<char>(F(I))...);
}

PGW_GATE_INLINE __m128i classes_of(__m128i x) noexcept {
  const auto seq = std::make_index_sequence<16>{};
  const __m128i nibble = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_shuffle_epi8(table<low_nibble_classes>(seq), _mm_and_si128(x, nibble));
  const __m128i hi = _mm_shuffle_epi8(table<high_nibble_classes>(seq),
                                      _mm_and_si128(_mm_srli_epi16(x, 4), nibble));
  return _mm_and_si128(lo, hi);
}

// The mask of bytes with any of the class bits `k`.
PGW_GATE_INLINE std::uint64_t any_of(__m128i classes, std::uint8_t k) noexcept {
  const __m128i none = _mm_cmpeq_epi8(_mm_and_si128(classes, _mm_set1_epi8(static_cast<char>(k))),
                                      _mm_setzero_si128());
  return ~static_cast<std::uint64_t>(_mm_movemask_epi8(none)) & 0xFFFF;
}

// Bit i of each mask: the class of byte i of a 64-byte block. `seen` ORs the classes of every
// byte so far, `high` whether one had its top bit set.
struct Block {
  std::uint64_t digit = 0, sep = 0, upper = 0;
};
struct Seen {
  __m128i classes = _mm_setzero_si128();
  std::uint64_t high = 0;
};

// Bits [shift, shift + 16) of the block from the 16 bytes x, of which the first `drop` are
// already in it (the last, overlapping load of a value).
PGW_GATE_INLINE void classify16(__m128i x, unsigned drop, unsigned shift, Block& b,
                                Seen& seen) noexcept {
  const __m128i c = classes_of(x);
  seen.classes = _mm_or_si128(seen.classes, c);
  seen.high |= static_cast<std::uint64_t>(_mm_movemask_epi8(x)) >> drop;
  b.digit |= (any_of(c, kDigit) >> drop) << shift;
  b.sep |= (any_of(c, kSep) >> drop) << shift;
  b.upper |= (any_of(c, kUpper4 | kUpper5) >> drop) << shift;
}

PGW_GATE_INLINE std::uint64_t load64(const char* p) noexcept {
  std::uint64_t x;
  std::memcpy(&x, p, 8);
  return x;
}
PGW_GATE_INLINE std::uint64_t load32(const char* p) noexcept {
  std::uint32_t x;
  std::memcpy(&x, p, 4);
  return x;
}

// The n < 16 bytes at p in a vector, the rest zero, read without touching a byte past p + n and
// without a store to reload (a narrow store followed by a wide load stalls store forwarding).
PGW_GATE_INLINE __m128i load_short(const char* p, std::size_t n) noexcept {
  std::uint64_t lo = 0, hi = 0;
  if (n >= 8) {
    lo = load64(p);
    hi = n == 8 ? 0 : load64(p + n - 8) >> (8 * (16 - n));
  } else if (n >= 4) {
    lo = load32(p) | (n == 4 ? 0 : (load32(p + n - 4) >> (8 * (8 - n))) << 32);
  } else {
    for (std::size_t i = 0; i < n; ++i)
      lo |= std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  }
  return _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo));
}

// The classes of v[from, from + 64) (fewer at the end; the missing bytes are in no class).
PGW_GATE_INLINE Block classify(std::string_view v, std::size_t from, Seen& seen) noexcept {
  Block b;
  const std::size_t n = std::min<std::size_t>(64, v.size() - from);
  const char* p = v.data() + from;
  unsigned lane = 0;
  for (; lane + 16 <= n; lane += 16) {
    classify16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + lane)), 0, lane, b, seen);
  }
  if (lane == n) return b;
  if (from + lane >= 16) {  // the value's last 16 bytes, those already classified shifted out
    classify16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + n - 16)),
               16 - static_cast<unsigned>(n - lane), lane, b, seen);
  } else {
    classify16(load_short(p + lane, n - lane), 0, lane, b, seen);
  }
  return b;
}

// The 64 bits of `cur` from bit s on, followed by `next`'s first s bits.
PGW_GATE_INLINE std::uint64_t ahead(std::uint64_t cur, std::uint64_t next, unsigned s) noexcept {
  return (cur >> s) | (next << (64 - s));
}

// Whether a run of digits and separators in `ds` holds 9 digits of `digit`. `carry` is the count
// of digits in the run that reached the previous block's end; it becomes this block's.
PGW_GATE_INLINE bool digit_run(std::uint64_t digit, std::uint64_t ds, unsigned& carry) noexcept {
  const unsigned total = static_cast<unsigned>(std::popcount(digit));
  if (ds == ~std::uint64_t{0}) {
    carry += total;
    return carry >= 9;
  }
  // The run that reaches bit 63 (none when bit 63 is not in one) carries into the next block.
  const unsigned top = 64 - static_cast<unsigned>(std::countl_zero(~ds));
  const std::uint64_t top_run = top == 64 ? 0 : ~std::uint64_t{0} << top;
  // A run of 9 digits spans 9 bytes of `ds` (or continues the previous block's run): most text
  // has no such span, and skips the walk over its runs.
  std::uint64_t span = ds & (ds >> 1);  // bit i: bytes i..i+1 in ds
  span &= span >> 2;                    // i..i+3
  span &= span >> 4;                    // i..i+7
  span &= ds >> 8;                      // i..i+8
  bool hit = false;
  if (total + carry >= 9 && (span != 0 || (carry != 0 && (ds & 1) != 0))) {
    std::uint64_t rest = ds;
    while (rest != 0 && !hit) {
      const unsigned start = static_cast<unsigned>(std::countr_zero(rest));
      const std::uint64_t from = rest >> start;
      const unsigned len = from == ~std::uint64_t{0} >> start
                               ? 64 - start
                               : static_cast<unsigned>(std::countr_zero(~from));
      const std::uint64_t run = (len == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << len) - 1)
                                << start;
      const unsigned in =
          static_cast<unsigned>(std::popcount(digit & run)) + (start == 0 ? carry : 0);
      hit = in >= 9;
      rest &= ~run;
    }
  }
  carry = static_cast<unsigned>(std::popcount(digit & top_run));  // ds has a gap: a new run
  return hit;
}

bool plus_before_digit(std::string_view v) noexcept {
  for (std::size_t i = v.find('+'); i != std::string_view::npos; i = v.find('+', i + 1)) {
    if (i + 1 < v.size() && is_digit(v[i + 1])) return true;
  }
  return false;
}

// One pass, 16 bytes at a time: the counts too_plain reads and the shapes (a digit run, an IBAN
// start found by its masks and confirmed by the byte before it); the rare bytes ('@', '+',
// escapes, non-ASCII) only noted, and looked at afterwards.
bool vectorised_gate(std::string_view value) noexcept {
  if (value.size() < 15) {
    // Too short for an IBAN: without an '@' or escape, fewer than 8 digits rule it out.
    const __m128i x = load_short(value.data(), value.size());
    const __m128i c = classes_of(x);
    if (any_of(c, kAt | kEscape2 | kEscape5) == 0 && _mm_movemask_epi8(x) == 0 &&
        std::popcount(any_of(c, kDigit)) < 8) {
      return false;
    }
  }
  std::size_t digits = 0, upper = 0;
  bool run = false, iban = false;
  unsigned carry = 0;  // digits in the run of digits and separators open at the block's end
  Seen seen;
  Block cur = classify(value, 0, seen);
  for (std::size_t from = 0; from < value.size(); from += 64) {
    const Block next = from + 64 < value.size() ? classify(value, from + 64, seen) : Block{};
    digits += static_cast<std::size_t>(std::popcount(cur.digit));
    upper += static_cast<std::size_t>(std::popcount(cur.upper));
    run = digit_run(cur.digit, cur.digit | cur.sep, carry) || run;
    // Two capitals and two digits; the byte before must not be a word character.
    for (std::uint64_t start = cur.upper & ahead(cur.upper, next.upper, 1) &
                               ahead(cur.digit, next.digit, 2) & ahead(cur.digit, next.digit, 3);
         start != 0 && !iban; start &= start - 1) {
      const std::size_t i = from + static_cast<std::size_t>(std::countr_zero(start));
      iban = i == 0 || !is_word(value[i - 1]);
    }
    cur = next;
  }
  const std::uint64_t any_at = any_of(seen.classes, kAt);
  if (any_at != 0) return true;  // an '@' is a shape of its own
  if ((seen.high | any_of(seen.classes, kEscape2 | kEscape5)) != 0 && has_lookalikes(value)) {
    return true;  // the scan decodes them
  }
  if (too_plain(value.size(), digits, upper, 0)) return false;
  return run || iban || (any_of(seen.classes, kPlus) != 0 && plus_before_digit(value));
}

#pragma GCC pop_options

const bool kHasSimd = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("popcnt") != 0 && __builtin_cpu_supports("ssse3") != 0;
}();
#else
constexpr bool kHasSimd = false;  // other CPUs: the scalar gate
bool vectorised_gate(std::string_view) noexcept {
  return false;
}
#endif

}  // namespace

namespace detail {

bool may_hold_builtin_pii_scalar(std::string_view value) noexcept {
  if (value.size() < 6) return false;  // "a@b.co" is the shortest finding
  std::size_t digits = 0, at = 0, upper = 0, high = 0;
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    digits += is_digit(c);
    upper += is_upper(c);
    at += c == '@';
    high += u >= 0xC2 || c == '%' || c == '&' || c == '\\';
  }
  if (high != 0 && has_lookalikes(value)) return true;  // the scan decodes them
  if (too_plain(value.size(), digits, upper, at)) return false;
  return builtin_shape(value);
}

}  // namespace detail

bool may_hold_builtin_pii(std::string_view value) noexcept {
  if (value.size() < 6) return false;  // "a@b.co" is the shortest finding
  return kHasSimd ? vectorised_gate(value) : detail::may_hold_builtin_pii_scalar(value);
}

}  // namespace pgwarden::policy
