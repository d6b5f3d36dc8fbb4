// Helpers shared by the policy file's readers (rules.cc, masking.cc).
#pragma once

#include <string>
#include <vector>

#include "protocol/result.h"

namespace simdjson::dom {
class element;
}

namespace pgwarden::policy {

// "FILE: JSON-PATH: WHY", the error every part of the policy file reports.
protocol::Error policy_error(const std::string& file, const std::string& path,
                             const std::string& why);

// Appends the strings of the JSON array at `e`; false if it is not an array of strings.
bool json_strings(const simdjson::dom::element& e, std::vector<std::string>& out);

// Sets `out` to the string at `e`; false if it is not a non-empty string (a rule's or a
// profile's "name").
bool json_name(const simdjson::dom::element& e, std::string& out);

}  // namespace pgwarden::policy
