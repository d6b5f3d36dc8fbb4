// Phone number validation with Google's libphonenumber (Debian's libphonenumber-dev), run only
// on the candidates the PII detectors' Hyperscan shapes find.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pgwarden::policy {

// The regions a profile validates national numbers for when it names none.
const std::vector<std::string>& default_phone_regions();
// Whether libphonenumber knows `region` (ISO 3166-1 alpha-2, upper case).
bool phone_region_supported(std::string_view region);
// A valid number: written with '+' and its country code (`international`), or in the national
// format of one of `regions`.
bool phone_valid(std::string_view candidate, bool international,
                 const std::vector<std::string>& regions);
// The same without the per-thread cache of recent answers (tests, benchmarks).
bool phone_valid_uncached(std::string_view candidate, bool international,
                          const std::vector<std::string>& regions);

}  // namespace pgwarden::policy
