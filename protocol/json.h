// JSON text for the few places pgwarden writes JSON (recording export, admin endpoint).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pgwarden::protocol {

// Appends `s` as a JSON string. Bytes that are not valid UTF-8 (binary values) become \u00XX,
// one per byte, so the output is always valid JSON.
void append_json_string(std::string& out, std::string_view s);

// Appends `items` as a JSON array of strings.
void append_json_strings(std::string& out, const std::vector<std::string>& items);

}  // namespace pgwarden::protocol
