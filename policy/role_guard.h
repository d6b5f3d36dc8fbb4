// Keeps a caller in the role pgwarden mapped it to. Judges statement text with PostgreSQL's own
// parser (libpg_query): a cheap pre-filter passes statements that cannot touch roles; the rest
// are parsed and refused if they change the session's role or could do so in ways that cannot be
// seen from outside (dynamic SQL in DO blocks and function bodies, set_config calls). Sans-I/O.
#pragma once

#include <string>
#include <string_view>

namespace pgwarden::policy {

// Why `sql` (one Query string, possibly several statements, or one Parse text) would change the
// session role; empty when it would not. Unparseable text is allowed: PostgreSQL rejects it too.
std::string role_change_reason(std::string_view sql);

}  // namespace pgwarden::policy
