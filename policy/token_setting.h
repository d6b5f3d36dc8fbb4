// `SET pgwarden.token = '<jwt>'`: how a long-lived session hands pgwarden a fresh token. pgwarden
// takes it and answers it itself; the text is never forwarded, recorded or logged. This reads a
// statement text for it: the exact form, or any other text that names the setting (refused, so a
// token is never passed on by a form pgwarden did not recognise).
#pragma once

#include <string_view>

namespace pgwarden::policy {

enum class TokenSetting : unsigned char {
  None,     // the text does not name pgwarden.token
  Refresh,  // SET [SESSION] pgwarden.token {= | TO} '<token>' [;]   (token: base64url and dots)
  Other,    // names it some other way (quoted, inside other statements, set_config, SHOW...)
};

// `token` is set for Refresh (a view into `sql`).
TokenSetting token_setting(std::string_view sql, std::string_view& token);

}  // namespace pgwarden::policy
