// Keeps a caller in the role pgwarden mapped it to. Role changes are found by PostgreSQL's own
// parser through the classifier (SET/RESET ROLE and SESSION AUTHORIZATION however spelled, Unicode
// escapes and quoting included; set_config anywhere; defaults set by ALTER ROLE/DATABASE; SET
// clauses and bodies of functions), and what cannot be seen through is counted as a possible role
// change: DO blocks, dynamic SQL, and statements pgwarden cannot analyse. Fast-path calls are
// allowed only for the large-object functions libpq uses. Sans-I/O.
#pragma once

#include <cstdint>
#include <string>

#include "policy/classifier.h"

namespace pgwarden::policy {

// Why a statement of these classes could change the session's role; empty when it could not.
std::string role_change_reason(ClassSet classes);

// A built-in function a client may call by OID (FunctionCall), and what it does.
struct FastPathFunction {
  std::uint32_t oid;
  const char* name;
  bool writes;  // changes a large object
};
// The large-object functions libpq calls through the fast-path interface (PostgreSQL 15's OIDs,
// checked against the server in the integration tests); null for any other OID.
const FastPathFunction* fast_path_function(std::uint32_t oid);
// All of them, for tests.
const FastPathFunction* fast_path_functions(std::size_t& count);

}  // namespace pgwarden::policy
