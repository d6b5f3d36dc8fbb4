// PII content detectors for masking (the masking issue builds on this): Hyperscan compiles all
// detectors into one database scanned once per value; cheap validators (Luhn, IBAN mod-97, SSN
// rules, e-mail and phone shape) run only on Hyperscan's candidate matches. Sans-I/O; one
// PiiScanner (Hyperscan scratch) per core.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/result.h"

struct hs_database;
struct hs_scratch;

namespace pgwarden::policy {

enum class PiiKind : std::uint8_t { CardNumber, Ssn, Email, Phone, Iban, Custom };
const char* pii_kind_name(PiiKind k);

struct PiiFinding {
  PiiKind kind;
  std::size_t begin;
  std::size_t end;           // one past the last byte
  std::uint16_t custom = 0;  // for Custom: which custom pattern (in build order)
  // Found in the value as read with Unicode look-alikes (no-break and other spaces, dashes,
  // fullwidth digits) taken for their ASCII characters, or with escapes decoded (%40, &#64;,
  // \u0040): its bytes are not those the validators saw, so `partial` hides it whole.
  bool lookalike = false;
};

// A necessary condition for any built-in detector to find something in `value`: an '@', a '+'
// before a digit, 9 digits in one run of digits and separators, or an IBAN's start (two
// capitals after a word boundary, two digits). Values failing it skip the Hyperscan scan.
bool may_hold_builtin_pii(std::string_view value) noexcept;
namespace detail {
// The same condition one byte at a time: the definition the vectorised gate is tested against.
bool may_hold_builtin_pii_scalar(std::string_view value) noexcept;
}  // namespace detail
// Whether `value` holds a Unicode look-alike of a character the detectors read (a no-break or
// other space, a dash, a fullwidth digit, plus or at sign) or an escape of a printable ASCII
// character (URL %XX, HTML &#NN; / &#xHH;, JSON \uXXXX): such values are scanned decoded.
bool has_lookalikes(std::string_view value) noexcept;

class PiiDetectors {
 public:
  // The built-in detectors plus custom regular expressions (Hyperscan syntax). National phone
  // numbers are validated for `phone_regions` (empty: default_phone_regions()).
  static protocol::Result<std::shared_ptr<const PiiDetectors>> build(
      const std::vector<std::string>& custom = {},
      const std::vector<std::string>& phone_regions = {});
  ~PiiDetectors();
  hs_database* db() const noexcept { return db_; }
  bool has_custom() const noexcept { return custom_ != 0; }
  const std::vector<std::string>& phone_regions() const noexcept { return regions_; }

 private:
  hs_database* db_ = nullptr;
  std::size_t custom_ = 0;
  std::vector<std::string> regions_;
};

class PiiScanner {
 public:
  PiiScanner() = default;
  ~PiiScanner();
  PiiScanner(const PiiScanner&) = delete;
  PiiScanner& operator=(const PiiScanner&) = delete;

  // Hyperscan reports every end of every reading: a long run of digits is candidates at nearly
  // every byte. Past this many in one value it is not scanned: the bookkeeping, kept per core
  // for reuse, stays under about 40 MiB (a 16 MiB value would otherwise take most of a
  // gigabyte). A look-alike value's byte map past kKeepLookalikeMap entries is not kept.
  static constexpr std::size_t kMaxCandidates = std::size_t{1} << 19;
  static constexpr std::size_t kKeepLookalikeMap = std::size_t{1} << 20;
  // Validated, non-overlapping findings in `value`, in order (cleared first). False if the
  // value could not be scanned, or has more than kMaxCandidates candidates (then mask it whole:
  // fail closed).
  bool scan(std::string_view value, const PiiDetectors& detectors, std::vector<PiiFinding>& out);

 private:
  bool scan_ascii(std::string_view value, const PiiDetectors& detectors,
                  std::vector<PiiFinding>& out);
  std::string normalized_;           // the value with look-alikes and escapes decoded
  std::vector<std::size_t> origin_;  // per byte of normalized_ (and its end): the value's offset
  hs_scratch* scratch_ = nullptr;
  const hs_database* scratch_for_ = nullptr;
  std::vector<PiiFinding> candidates_;  // reused: no allocation per value once warm
  std::vector<unsigned> ids_;
  std::vector<std::size_t> order_;
  std::vector<PiiFinding> valid_;
};

// Validators, exposed for tests.
bool luhn_valid(std::string_view digits);
bool iban_valid(std::string_view iban);  // spaces allowed

}  // namespace pgwarden::policy
