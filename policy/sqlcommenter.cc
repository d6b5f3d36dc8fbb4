#include "policy/sqlcommenter.h"

namespace pgwarden::policy {

namespace {

bool space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// URL-decodes `in`; false when an escape is malformed.
bool decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
    if (out.size() > kMaxTagValue) {
      out.resize(kMaxTagValue);
      return true;
    }
  }
  return true;
}

// key='value',key='value' (a value's quote escaped as \').
bool parse_pairs(std::string_view body, CommentTags& tags, bool mcp) {
  std::size_t i = 0;
  std::string key, value, raw;
  while (i < body.size()) {
    while (i < body.size() && space(body[i])) ++i;
    const std::size_t eq = body.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= body.size() || body[eq + 1] != '\'') return false;
    if (!decode(body.substr(i, eq - i), key)) return false;
    raw.clear();
    std::size_t j = eq + 2;
    for (; j < body.size() && body[j] != '\''; ++j) {
      if (body[j] == '\\' && j + 1 < body.size()) ++j;
      raw.push_back(body[j]);
    }
    if (j >= body.size()) return false;
    if (!decode(raw, value)) return false;
    if (key == "intent") tags.intent = value;
    if (key == "traceparent") tags.traceparent = value;
    if (key == "tracestate") tags.tracestate = value;
    if (mcp) {
      if (key == "mcp_session") tags.mcp_session = value;
      if (key == "mcp_call") tags.mcp_call = value;
      if (key == "jsonrpc_id") tags.jsonrpc_id = value;
      if (key == "tool") tags.tool = value;
      if (key == "arguments") tags.arguments = value;
      if (key == "mcp_client") tags.mcp_client = value;
    }
    i = j + 1;
    while (i < body.size() && space(body[i])) ++i;
    if (i < body.size()) {
      if (body[i] != ',') return false;
      ++i;
    }
  }
  return true;
}

}  // namespace

std::string_view comment_body(std::string_view sql, bool mcp) {
  std::size_t end = sql.size();
  while (end > 0 && (space(sql[end - 1]) || sql[end - 1] == ';')) --end;
  std::string_view body;
  if (!mcp && end >= 4 && sql[end - 1] == '/' && sql[end - 2] == '*') {
    const std::size_t open = sql.rfind("/*", end - 2);
    if (open != std::string_view::npos && open + 2 <= end - 2)
      body = sql.substr(open + 2, end - 4 - open);
  }
  if (body.empty()) {
    std::size_t start = 0;
    while (start < sql.size() && space(sql[start])) ++start;
    if (start + 1 < sql.size() && sql[start] == '/' && sql[start + 1] == '*') {
      const std::size_t close = sql.find("*/", start + 2);
      if (close != std::string_view::npos) body = sql.substr(start + 2, close - start - 2);
    }
  }
  return body;
}

CommentTags comment_tags(std::string_view sql, bool mcp) {
  const std::string_view body = comment_body(sql, mcp);
  if (body.empty() || body.find('=') == std::string_view::npos) return {};
  CommentTags tags;
  if (!parse_pairs(body, tags, mcp)) return {};
  return tags;
}

CommentTags application_tags(std::string_view application_name) {
  CommentTags tags = comment_tags(application_name);
  if (!tags.empty()) return tags;
  // The pairs after the application's own name: "nightly-report intent='...',traceparent='...'".
  const std::size_t sp = application_name.find(' ');
  if (sp == std::string_view::npos) return {};
  const std::string_view pairs = application_name.substr(sp + 1);
  if (pairs.find('=') == std::string_view::npos || !parse_pairs(pairs, tags, false)) return {};
  return tags;
}

std::string_view after_mcp_comment(std::string_view sql) {
  std::size_t start = 0;
  while (start < sql.size() && space(sql[start])) ++start;
  if (sql.substr(start, 2) != "/*") return sql;
  const std::size_t close = sql.find("*/", start + 2);
  if (close == std::string_view::npos) return sql;
  std::size_t rest = close + 2;
  while (rest < sql.size() && space(sql[rest])) ++rest;
  return sql.substr(rest);
}

}  // namespace pgwarden::policy
