#include "policy/library_versions.h"

#include <hs/hs.h>
#include <pg_query.h>
#include <simdjson.h>

namespace pgwarden::policy {

std::string library_versions() {
  std::string hs = hs_version();  // "5.4.0 2023-01-01"
  hs = hs.substr(0, hs.find(' '));
  std::string out = "hyperscan ";
  out += hs;
  out += ", simdjson ";
  out += std::to_string(simdjson::SIMDJSON_VERSION_MAJOR) + "." +
         std::to_string(simdjson::SIMDJSON_VERSION_MINOR) + "." +
         std::to_string(simdjson::SIMDJSON_VERSION_REVISION);
  out += ", libpg_query (PostgreSQL " PG_VERSION " parser)";
  return out;
}

}  // namespace pgwarden::policy
