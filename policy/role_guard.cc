#include "policy/role_guard.h"

#include <pg_query.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cctype>

namespace pgwarden::policy {
namespace {

// Every way to name a role change contains one of these (case-insensitively): SET/RESET ROLE,
// SESSION AUTHORIZATION, set_config(...). DO/function bodies are only suspicious with one too.
constexpr std::array<std::string_view, 3> kKeywords = {"role", "authorization", "set_config"};

bool may_touch_roles(std::string_view sql) {
  for (const std::string_view kw : kKeywords) {
    const auto it = std::search(sql.begin(), sql.end(), kw.begin(), kw.end(), [](char a, char b) {
      return std::tolower(static_cast<unsigned char>(a)) == b;
    });
    if (it != sql.end()) return true;
  }
  return false;
}

bool is_role_setting(std::string_view name) {
  return name == "role" || name == "session_authorization";
}

// Walks libpg_query's JSON parse tree; sets `why` at the first construct that can change roles.
void walk(simdjson::dom::element e, std::string& why) {
  if (!why.empty()) return;
  simdjson::dom::object obj;
  simdjson::dom::array arr;
  if (e.get_array().get(arr) == simdjson::SUCCESS) {
    for (simdjson::dom::element child : arr) walk(child, why);
    return;
  }
  if (e.get_object().get(obj) != simdjson::SUCCESS) return;
  for (auto field : obj) {
    const std::string_view key = field.key;
    if (key == "VariableSetStmt") {
      std::string_view name;
      if (field.value["name"].get_string().get(name) == simdjson::SUCCESS &&
          is_role_setting(name)) {
        why = "SET/RESET of " + std::string(name);
        return;
      }
    } else if (key == "FuncCall") {
      // set_config('role', ...) changes the role like SET ROLE; with a computed first argument
      // it cannot be told apart, so every set_config call is refused.
      simdjson::dom::array names;
      if (field.value["funcname"].get_array().get(names) == simdjson::SUCCESS) {
        for (simdjson::dom::element n : names) {
          std::string_view s;
          if (n["String"]["sval"].get_string().get(s) == simdjson::SUCCESS && s == "set_config") {
            why = "set_config()";
            return;
          }
        }
      }
    } else if (key == "DoStmt") {
      why = "a DO block that mentions roles (dynamic SQL cannot be checked)";
      return;
    } else if (key == "CreateFunctionStmt") {
      why = "a function body or SET clause that mentions roles";
      return;
    } else if (key == "AlterRoleSetStmt" || key == "AlterDatabaseSetStmt") {
      // The SET inside is inlined: {"setstmt": {"kind": ..., "name": ...}}.
      std::string_view name;
      if (field.value["setstmt"]["name"].get_string().get(name) == simdjson::SUCCESS &&
          is_role_setting(name)) {
        why = "a role or database default for " + std::string(name);
        return;
      }
    }
    walk(field.value, why);
    if (!why.empty()) return;
  }
}

}  // namespace

std::string role_change_reason(std::string_view sql) {
  if (!may_touch_roles(sql)) return {};
  const std::string text(sql);  // libpg_query wants a NUL-terminated string
  PgQueryParseResult parsed = pg_query_parse(text.c_str());
  std::string why;
  if (parsed.error == nullptr && parsed.parse_tree != nullptr) {
    simdjson::dom::parser parser;
    simdjson::dom::element tree;
    if (parser.parse(std::string_view(parsed.parse_tree)).get(tree) == simdjson::SUCCESS) {
      walk(tree, why);
    } else {
      why = "statement could not be analysed";  // fail closed on our own limits
    }
  }
  pg_query_free_parse_result(parsed);
  return why;
}

}  // namespace pgwarden::policy
