// Versions of the third-party libraries this module wraps, for `pgwarden --version`.
#pragma once

#include <string>

namespace pgwarden::policy {

// e.g. "hyperscan 5.4.0 simdjson 3.1.5 libpg_query 15-4.0.0"
std::string library_versions();

}  // namespace pgwarden::policy
