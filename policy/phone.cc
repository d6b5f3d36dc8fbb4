#include "policy/phone.h"

#include <phonenumbers/phonenumberutil.h>

#include <functional>
#include <set>

namespace pgwarden::policy {

namespace pn = i18n::phonenumbers;

const std::vector<std::string>& default_phone_regions() {
  static const std::vector<std::string> regions = {"US", "GB", "DE", "FR"};
  return regions;
}

bool phone_region_supported(std::string_view region) {
  static const std::set<std::string, std::less<>> supported = [] {
    std::set<std::string> regions;
    pn::PhoneNumberUtil::GetInstance()->GetSupportedRegions(&regions);
    return std::set<std::string, std::less<>>(regions.begin(), regions.end());
  }();
  return supported.count(region) != 0;
}

namespace {

// libphonenumber takes 10 to 25 µs a number (ICU regular expressions): the answers for recent
// numbers are kept per thread (direct-mapped by hash of the text and the regions asked).
struct CacheEntry {
  std::string key;
  bool valid = false;
};
constexpr std::size_t kCacheSize = 4096;

}  // namespace

bool phone_valid(std::string_view candidate, bool international,
                 const std::vector<std::string>& regions) {
  thread_local std::vector<CacheEntry> cache(kCacheSize);
  thread_local std::string key;
  key.assign(candidate);
  key.push_back(international ? '+' : '0');
  if (!international) {
    for (const std::string& r : regions) key.append(r);
  }
  CacheEntry& slot = cache[std::hash<std::string>{}(key) % kCacheSize];
  if (slot.key == key) return slot.valid;
  slot.key = key;
  slot.valid = phone_valid_uncached(candidate, international, regions);
  return slot.valid;
}

bool phone_valid_uncached(std::string_view candidate, bool international,
                          const std::vector<std::string>& regions) {
  const pn::PhoneNumberUtil* util = pn::PhoneNumberUtil::GetInstance();
  const std::string text(candidate);
  auto valid_in = [&](const std::string& region) {
    pn::PhoneNumber number;
    return util->Parse(text, region, &number) == pn::PhoneNumberUtil::NO_PARSING_ERROR &&
           util->IsValidNumber(number);
  };
  if (international) return valid_in("ZZ");  // the country code says where
  for (const std::string& r : regions) {
    if (valid_in(r)) return true;
  }
  return false;
}

}  // namespace pgwarden::policy
