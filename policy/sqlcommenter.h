// sqlcommenter (https://google.github.io/sqlcommenter/): a comment at the end (or start) of a
// statement, /*key='value',key2='value2'*/, keys and values URL-encoded. pgwarden reads the
// caller's intent and W3C trace context from it so that each recorded statement links to the
// agent's trace (where the prompt lives). What the caller says about itself, recorded as such.
#pragma once

#include <string>
#include <string_view>

namespace pgwarden::policy {

struct CommentTags {
  std::string intent, traceparent, tracestate;
  // Written by pgwarden's MCP endpoint (read only for its own sessions): the MCP session, the
  // call's ordinal in it, the JSON-RPC id, the tool and its arguments (JSON).
  std::string mcp_session, mcp_call, jsonrpc_id, tool, arguments, mcp_client;
  bool empty() const noexcept {
    return intent.empty() && traceparent.empty() && tracestate.empty() && mcp_session.empty();
  }
};

// The tags of the text's sqlcommenter comment (empty when it has none, or it is malformed).
// Each value is clipped to kMaxTagValue bytes. `mcp`: only the leading comment is read (the one
// pgwarden's MCP endpoint writes; the caller's SQL follows it), with the MCP keys too.
CommentTags comment_tags(std::string_view sql, bool mcp = false);
// The text of the comment comment_tags() reads (empty when there is none): no tag without it.
std::string_view comment_body(std::string_view sql, bool mcp = false);
inline constexpr std::size_t kMaxTagValue = 1024;

// Wire clients may say the same for a whole session in application_name: the application's name,
// then the pairs ("nightly-report intent='month%20end',traceparent='00-...'"), or a comment.
// (PostgreSQL keeps 63 bytes of it; pgwarden reads what the client sent.)
CommentTags application_tags(std::string_view application_name);

// The statement after the leading comment pgwarden's MCP endpoint writes (its values are
// URL-encoded, so its first "*/" ends it), and the blanks after it; all of `sql` without one.
std::string_view after_mcp_comment(std::string_view sql);

}  // namespace pgwarden::policy
