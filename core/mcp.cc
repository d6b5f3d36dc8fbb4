#include "core/mcp.h"

#include <httplib.h>
#include <openssl/rand.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <optional>

#include "core/admin_http.h"
#include "core/log.h"
#include "core/mcp_link.h"
#include "core/worker.h"
#include "policy/client_auth.h"
#include "policy/internal_login.h"
#include "policy/rules.h"
#include "protocol/json.h"

namespace pgwarden::core {

namespace sj = simdjson;
using protocol::append_json_string;

struct McpSession {
  std::string id;
  policy::CallerIdentity who;
  std::string client_name, client_version, protocol;
  std::timed_mutex mu;  // one tool call at a time
  std::uint64_t calls = 0;
  std::atomic<std::int64_t> last_used{0};  // milliseconds (steady clock)
};

namespace {

constexpr std::string_view kProtocols[] = {"2025-11-25", "2025-06-18", "2025-03-26"};
constexpr std::size_t kDefaultRows = 100;
constexpr std::size_t kMaxSessionsPerCaller = 8;
constexpr unsigned kMaxCallsPerCaller = 4;

std::int64_t now_s() {
  return static_cast<std::int64_t>(std::time(nullptr));
}
std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A token may go on with an MCP session only if it is the session's caller in every respect.
bool same_caller(const policy::CallerIdentity& a, const policy::CallerIdentity& b) {
  return a.principal == b.principal && a.actors == b.actors && a.groups == b.groups &&
         a.identity == b.identity && a.client_id == b.client_id;
}

// Who a pooled connection's session is for: a connection passes between callers only through
// a handover (a new login, a new recorded session), never between tokens that differ.
std::string caller_key(const policy::CallerIdentity& c) {
  std::string k = c.principal + '\x1f' + c.identity + '\x1f' + c.client_id;
  for (const auto& a : c.actors) k += "\x1f" + a;
  k += '\x1e';
  for (const auto& g : c.groups) k += "\x1f" + g;
  return k;
}

policy::AuthenticatedCaller internal_caller(const policy::CallerIdentity& who) {
  policy::AuthenticatedCaller c;
  c.identity = who.identity;
  c.groups = who.groups;
  c.principal = who.principal;
  c.actors = who.actors;
  c.client_id = who.client_id;
  return c;
}

std::string random_id() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

bool supported(std::string_view v) {
  return std::find(std::begin(kProtocols), std::end(kProtocols), v) != std::end(kProtocols);
}

// Percent-encodes all but unreserved characters (sqlcommenter values: no quote, no "*/").
std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string rpc_result(const std::string& id, const std::string& result) {
  return "{\"jsonrpc\":\"2.0\",\"id\":" + id + ",\"result\":" + result + "}";
}

std::string rpc_error(const std::string& id, int code, std::string_view message) {
  std::string out = "{\"jsonrpc\":\"2.0\",\"id\":" + (id.empty() ? std::string("null") : id) +
                    ",\"error\":{\"code\":" + std::to_string(code) + ",\"message\":";
  append_json_string(out, message);
  return out + "}}";
}

void json_reply(httplib::Response& res, int status, const std::string& body) {
  http_reply(res, status, body, "application/json");
}

const char* kTools = R"JSON([
{"name":"query","title":"Run one SQL statement","description":"Runs exactly one SQL statement as the signed-in user, through pgwarden's policy (it may be refused, or held for a person's approval), masking and recording. Returns up to max_rows rows. Transaction control is not allowed: each call is its own transaction.","inputSchema":{"type":"object","properties":{"sql":{"type":"string","description":"One SQL statement"},"intent":{"type":"string","description":"Why you run it, in a sentence (recorded with the statement)"},"max_rows":{"type":"integer","minimum":1,"maximum":1000,"description":"Rows to return (default 100)"}},"required":["sql"]}},
{"name":"explain","title":"Show a statement's plan","description":"EXPLAIN (without ANALYZE) of one SQL statement: the plan PostgreSQL would use.","inputSchema":{"type":"object","properties":{"sql":{"type":"string"},"intent":{"type":"string"}},"required":["sql"]}},
{"name":"list_tables","title":"List tables","description":"Tables, views and materialized views, optionally of one schema (system schemas left out).","inputSchema":{"type":"object","properties":{"schema":{"type":"string"}}}},
{"name":"describe_table","title":"Describe a table","description":"A table's columns: name, type, nullable, default. The name may be schema-qualified.","inputSchema":{"type":"object","properties":{"table":{"type":"string"}},"required":["table"]}}
])JSON";

struct Call {
  std::string probe;  // run first, judged like any statement: it must be allowed (describe_table)
  std::string sql;
  std::vector<std::optional<std::string>> params;
  std::string intent, arguments;
  std::size_t max_rows = kDefaultRows;
};

// A table name as the caller wrote it (name or schema.name; unquoted parts fold to lower case,
// quoted ones are kept), every part quoted: nothing but a name reaches the statement.
std::optional<std::string> quoted_name(std::string_view in) {
  std::string out;
  std::size_t i = 0, parts = 0;
  while (i < in.size()) {
    if (++parts > 2) return std::nullopt;
    std::string part;
    if (in[i] == '"') {
      for (++i;; ++i) {
        if (i >= in.size()) return std::nullopt;
        if (in[i] == '"') {
          if (i + 1 < in.size() && in[i + 1] == '"') {
            part += '"';
            ++i;
            continue;
          }
          ++i;
          break;
        }
        part += in[i];
      }
    } else {
      while (i < in.size() && in[i] != '.') {
        const auto c = static_cast<unsigned char>(in[i]);
        if (!(std::isalnum(c) || c == '_' || c == '$' || c >= 0x80)) return std::nullopt;
        part += static_cast<char>(std::tolower(c));
        ++i;
      }
    }
    if (part.empty() || part.find('\0') != std::string::npos) return std::nullopt;
    if (!out.empty()) out += '.';
    out += '"';
    for (const char ch : part) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    out += '"';
    if (i < in.size()) {
      if (in[i] != '.' || i + 1 == in.size()) return std::nullopt;
      ++i;
    }
  }
  if (out.empty()) return std::nullopt;
  return out;
}

// The tool's statement, from its arguments; `error` set when they are not what the tool takes.
std::optional<Call> build_call(std::string_view tool, sj::dom::object args, std::size_t max_rows,
                               std::string& error) {
  Call c;
  auto str = [&](const char* key, std::string& out, bool required) {
    sj::dom::element e;
    if (args[key].get(e) != sj::SUCCESS) {
      if (required) error = std::string("argument \"") + key + "\" is required";
      return !required;
    }
    std::string_view v;
    if (e.get_string().get(v) != sj::SUCCESS || (required && v.empty())) {
      error = std::string("argument \"") + key + "\" must be a non-empty string";
      return false;
    }
    out = v;
    return true;
  };
  for (auto field : args) {
    const std::string_view k = field.key;
    const bool known = k == "intent" || (k == "sql" && (tool == "query" || tool == "explain")) ||
                       (k == "max_rows" && tool == "query") ||
                       (k == "schema" && tool == "list_tables") ||
                       (k == "table" && tool == "describe_table");
    if (!known) {
      error = "unknown argument \"" + std::string(k) + "\" for tool " + std::string(tool);
      return std::nullopt;
    }
    if (k != "sql" && k != "intent") {
      if (!c.arguments.empty()) c.arguments += ",";
      append_json_string(c.arguments, k);
      c.arguments += ":" + sj::to_string(field.value);
    }
  }
  if (!c.arguments.empty()) c.arguments = "{" + c.arguments + "}";
  if (!str("intent", c.intent, false)) return std::nullopt;
  if (tool == "query" || tool == "explain") {
    if (!str("sql", c.sql, true)) return std::nullopt;
    // Never ANALYZE: the options come first, so the text cannot add its own.
    if (tool == "explain") c.sql = "EXPLAIN (ANALYZE false, FORMAT TEXT) " + c.sql;
    sj::dom::element m;
    if (tool == "query" && args["max_rows"].get(m) == sj::SUCCESS) {
      std::int64_t n = 0;
      if (m.get_int64().get(n) != sj::SUCCESS || n < 1 || static_cast<std::size_t>(n) > max_rows) {
        error = "max_rows must be a whole number from 1 to " + std::to_string(max_rows);
        return std::nullopt;
      }
      c.max_rows = static_cast<std::size_t>(n);
    }
    if (tool == "explain") c.max_rows = max_rows;
    return c;
  }
  if (tool == "list_tables") {
    std::string schema;
    if (!str("schema", schema, false)) return std::nullopt;
    c.sql =
        "SELECT n.nspname AS schema, c.relname AS name, CASE c.relkind WHEN 'r' THEN 'table' "
        "WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized "
        "view' ELSE 'foreign table' END AS kind FROM pg_catalog.pg_class c JOIN "
        "pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN "
        "('r','p','v','m','f') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE "
        "'pg\\_%' AND ($1::text IS NULL OR n.nspname = $1) ORDER BY 1, 2";
    c.params.push_back(schema.empty() ? std::nullopt : std::optional(schema));
    c.max_rows = max_rows;
    return c;
  }
  if (tool == "describe_table") {
    std::string table;
    if (!str("table", table, true)) return std::nullopt;
    const auto name = quoted_name(table);
    if (!name) {
      error = "table must be a name or schema.name (quoted with \"...\" where needed)";
      return std::nullopt;
    }
    // The policy judges a read of the table itself (forbidden tables stay forbidden).
    c.probe = "SELECT * FROM " + *name + " WHERE false";
    table = *name;
    c.sql =
        "SELECT a.attname AS column, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, "
        "NOT a.attnotnull AS nullable, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default "
        "FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = "
        "a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = $1::pg_catalog.regclass AND "
        "a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";
    c.params.emplace_back(table);
    c.max_rows = max_rows;
    return c;
  }
  error = "unknown tool \"" + std::string(tool) + "\"";
  return std::nullopt;
}

// The tool result: structuredContent and a text rendering of it.
std::string tool_result(const SqlResult& r) {
  std::string structured = "{", text;
  if (!r.ok) {
    structured += "\"sqlstate\":";
    append_json_string(structured, r.sqlstate);
    structured += ",\"message\":";
    append_json_string(structured, r.message);
    text = "ERROR " + r.sqlstate + ": " + r.message;
  } else {
    structured += "\"command\":";
    append_json_string(structured, r.command);
    structured += ",\"columns\":[";
    for (std::size_t c = 0; c < r.columns.size(); ++c) {
      if (c > 0) structured += ",";
      append_json_string(structured, r.columns[c]);
      if (c > 0) text += '\t';
      text += r.columns[c];
    }
    structured += "],\"rows\":[";
    for (std::size_t i = 0; i < r.rows.size(); ++i) {
      structured += i > 0 ? ",{" : "{";
      text += "\n";
      for (std::size_t c = 0; c < r.columns.size() && c < r.rows[i].size(); ++c) {
        if (c > 0) structured += ",";
        append_json_string(structured, r.columns[c]);
        structured += ":";
        if (r.rows[i][c]) {
          append_json_string(structured, *r.rows[i][c]);
        } else {
          structured += "null";
        }
        if (c > 0) text += '\t';
        text += r.rows[i][c] ? std::string_view(*r.rows[i][c]) : std::string_view("NULL");
      }
      structured += "}";
    }
    structured += "],\"row_count\":" + std::to_string(r.row_count) +
                  ",\"truncated\":" + (r.truncated ? "true" : "false");
    text += (r.columns.empty() ? "" : "\n") + r.command +
            (r.truncated ? " (" + std::to_string(r.rows.size()) + " of " +
                               std::to_string(r.row_count) + " rows shown)"
                         : "");
  }
  structured += ",\"notices\":[";
  for (std::size_t i = 0; i < r.notices.size(); ++i) {
    if (i > 0) structured += ",";
    append_json_string(structured, r.notices[i]);
    text += "\nNOTICE: " + r.notices[i];
  }
  structured += "]}";
  std::string out = "{\"content\":[{\"type\":\"text\",\"text\":";
  append_json_string(out, text);
  out +=
      "}],\"structuredContent\":" + structured + ",\"isError\":" + (r.ok ? "false" : "true") + "}";
  return out;
}

std::string text_error(std::string_view message) {
  SqlResult r;
  r.sqlstate = "08000";
  r.message = std::string(message);
  return tool_result(r);
}

}  // namespace

McpServer::McpServer(Control& control, McpOptions options)
    : control_(control),
      options_(std::move(options)),
      pool_(options_.pool_per_role, options_.pool_idle_ms) {
  janitor_ = std::jthread([this](std::stop_token stop) {
    std::unique_lock lock(janitor_mu_);
    for (;;) {
      janitor_cv_.wait_for(lock, stop, std::chrono::seconds(1), [] { return false; });
      if (stop.stop_requested()) return;
      lock.unlock();
      sweep();
      pool_.expire();
      lock.lock();
    }
  });
  options_.jwt.audiences = {options_.url};
  const std::size_t scheme = options_.url.find("://");
  const std::size_t slash =
      scheme == std::string::npos ? std::string::npos : options_.url.find('/', scheme + 3);
  path_ = slash == std::string::npos ? "/mcp" : options_.url.substr(slash);
}

McpServer::~McpServer() = default;

std::size_t McpServer::sessions() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

std::string McpServer::metadata_url() const {
  const std::size_t scheme = options_.url.find("://");
  const std::size_t slash = options_.url.find('/', scheme + 3);
  return options_.url.substr(0, slash) + "/.well-known/oauth-protected-resource" + path_;
}

void McpServer::install(httplib::Server& s) {
  auto metadata = [this](const httplib::Request&, httplib::Response& res) {
    std::string body = "{\"resource\":";
    append_json_string(body, options_.url);
    body += ",\"authorization_servers\":[";
    for (std::size_t i = 0; i < options_.jwt.issuers.size(); ++i) {
      if (i > 0) body += ",";
      append_json_string(body, options_.jwt.issuers[i]);
    }
    body += "],\"bearer_methods_supported\":[\"header\"],\"resource_name\":\"pgwarden\"}";
    json_reply(res, 200, body);
  };
  s.Get("/.well-known/oauth-protected-resource", metadata);
  s.Get("/.well-known/oauth-protected-resource" + path_, metadata);
  s.Post(path_, [this](const httplib::Request& req, httplib::Response& res) { post(req, res); });
  s.Delete(path_, [this](const httplib::Request& req, httplib::Response& res) { end(req, res); });
  s.Get(path_, [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Allow", "POST, DELETE");
    http_reply(res, 405, "pgwarden's MCP endpoint offers no event stream; POST requests\n");
  });
}

std::optional<policy::CallerIdentity> McpServer::authenticate(const httplib::Request& req,
                                                              httplib::Response& res) {
  const std::string token = bearer_token(req);
  const auto keys = options_.jwks != nullptr ? options_.jwks->get() : nullptr;
  std::string why = token.empty() ? "a bearer token is required" : "";
  if (!token.empty()) {
    if (keys == nullptr) {
      why = "the identity provider's keys are not loaded yet";
    } else {
      policy::JwtVerifier verifier(options_.jwt);
      auto id = verifier.verify(token, *keys, now_s());
      if (id) return std::move(*id);
      if (verifier.last_kid_unknown()) options_.jwks->request_refresh();
      PGW_INFO("mcp: token from %s refused: %s", req.remote_addr.c_str(),
               id.error().message.c_str());
      why = "invalid token";
    }
  }
  res.set_header("WWW-Authenticate", "Bearer resource_metadata=\"" + metadata_url() + "\"" +
                                         (token.empty() ? "" : ", error=\"invalid_token\""));
  json_reply(res, 401, rpc_error("", -32001, why));
  return std::nullopt;
}

std::shared_ptr<McpSession> McpServer::find(const std::string& id) {
  std::lock_guard lock(mu_);
  const auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

void McpServer::sweep() {
  const std::int64_t now = now_ms();
  std::lock_guard lock(mu_);
  std::erase_if(sessions_, [&](const auto& kv) {
    return now - kv.second->last_used.load() > options_.idle_timeout_s * 1000 &&
           kv.second.use_count() == 1;
  });
}

void McpServer::end(const httplib::Request& req, httplib::Response& res) {
  const auto who = authenticate(req, res);
  if (!who) return;
  const std::string id = req.get_header_value("Mcp-Session-Id");
  const auto session = find(id);
  if (session == nullptr) return json_reply(res, 404, rpc_error("", -32001, "no such MCP session"));
  if (!same_caller(session->who, *who)) {
    return json_reply(res, 403, rpc_error("", -32001, "the MCP session belongs to another caller"));
  }
  {
    std::lock_guard lock(mu_);
    sessions_.erase(id);
  }
  PGW_INFO("mcp: session %s of %s ended by its client", id.c_str(), who->identity.c_str());
  res.status = 204;
}

void McpServer::post(const httplib::Request& req, httplib::Response& res) {
  const auto who = authenticate(req, res);
  if (!who) return;
  sweep();  // idle sessions end (and free their connection) whoever comes next
  const std::string type = req.get_header_value("Content-Type");
  if (type.rfind("application/json", 0) != 0) {
    return json_reply(res, 415, rpc_error("", -32700, "Content-Type must be application/json"));
  }
  sj::dom::parser parser;
  sj::dom::element doc;
  sj::dom::object msg;
  if (parser.parse(req.body).get(doc) != sj::SUCCESS) {
    return json_reply(res, 400, rpc_error("", -32700, "parse error: the body is not JSON"));
  }
  if (doc.is_array()) {
    return json_reply(res, 400, rpc_error("", -32600, "JSON-RPC batches are not supported"));
  }
  if (doc.get_object().get(msg) != sj::SUCCESS) {
    return json_reply(res, 400, rpc_error("", -32600, "a JSON-RPC message is an object"));
  }
  sj::dom::element id_el;
  const bool has_id = msg["id"].get(id_el) == sj::SUCCESS && !id_el.is_null();
  const std::string id = has_id ? sj::to_string(id_el) : std::string();
  std::string_view method;
  const bool has_method = msg["method"].get_string().get(method) == sj::SUCCESS;
  const std::string version = req.get_header_value("MCP-Protocol-Version");
  if (!version.empty() && !supported(version)) {
    return json_reply(res, 400,
                      rpc_error(id, -32600, "unsupported MCP-Protocol-Version " + version));
  }
  // Absent params and arguments read as {} (a parsed empty object, never a default one).
  sj::dom::parser empty_parser;
  const sj::dom::object empty = empty_parser.parse(sj::padded_string("{}", 2)).get_object().value();
  sj::dom::object params;
  if (msg["params"].get_object().get(params) != sj::SUCCESS) params = empty;
  const bool params_ok = msg["params"].error() == sj::NO_SUCH_FIELD || msg["params"].is_object();

  if (has_method && method == "initialize") {
    if (!has_id) return json_reply(res, 400, rpc_error("", -32600, "initialize is a request"));
    // An agent acting for a user must be allowed to, and have a rule (as at a wire login).
    const auto pol = control_.policy.load();
    if (!who->actors.empty()) {
      for (const std::string& a : who->actors) {
        if (pol == nullptr || pol->may_act(a, who->groups) == nullptr) {
          return json_reply(
              res, 403,
              rpc_error(id, -32001,
                        "agent \"" + a + "\" may not act for \"" + who->identity + "\""));
        }
      }
      const policy::Who w{who->identity, &who->groups, who->actors.front(), nullptr};
      if (!pol->has_rule_for(w)) {
        return json_reply(
            res, 403,
            rpc_error(id, -32001, "no policy rule is for agent \"" + who->actors.front() + "\""));
      }
    }
    if (options_.auth == nullptr || options_.auth->map_groups(who->groups) == nullptr) {
      return json_reply(
          res, 403,
          rpc_error(id, -32001, "no role mapping for the groups of \"" + who->identity + "\""));
    }
    auto session = std::make_shared<McpSession>();
    session->id = random_id();
    session->who = *who;
    std::string_view v;
    session->protocol = params["protocolVersion"].get_string().get(v) == sj::SUCCESS && supported(v)
                            ? std::string(v)
                            : std::string(kProtocols[0]);
    sj::dom::object info;
    if (params["clientInfo"].get_object().get(info) == sj::SUCCESS) {
      if (info["name"].get_string().get(v) == sj::SUCCESS) session->client_name = v.substr(0, 100);
      if (info["version"].get_string().get(v) == sj::SUCCESS) {
        session->client_version = v.substr(0, 50);
      }
    }
    session->last_used = now_ms();
    {
      std::lock_guard lock(mu_);
      // One caller cannot take every slot: beyond its share, its least recently used idle
      // session makes room (a client that never sent DELETE is not locked out either). A caller
      // is the token's whole identity: an agent acting for alice never evicts alice's own.
      std::shared_ptr<McpSession> oldest;
      std::size_t own = 0;
      for (const auto& [sid, other] : sessions_) {
        if (!same_caller(other->who, *who)) continue;
        ++own;
        if (other.use_count() == 1 && (oldest == nullptr || other->last_used < oldest->last_used)) {
          oldest = other;
        }
      }
      if (own >= kMaxSessionsPerCaller) {
        if (oldest == nullptr) {
          return json_reply(res, 429,
                            rpc_error(id, -32001, "too many MCP sessions of yours are busy"));
        }
        sessions_.erase(oldest->id);
      }
      if (sessions_.size() >= options_.max_sessions) {
        return json_reply(res, 503,
                          rpc_error(id, -32001, "too many MCP sessions (--mcp-max-sessions)"));
      }
      sessions_[session->id] = session;
    }
    PGW_INFO("mcp: session %s for %s%s%s (client %s %s)", session->id.c_str(),
             who->identity.c_str(), who->actors.empty() ? "" : " acted for by ",
             who->actors.empty() ? "" : who->actors.front().c_str(), session->client_name.c_str(),
             session->client_version.c_str());
    res.set_header("Mcp-Session-Id", session->id);
    std::string result = "{\"protocolVersion\":";
    append_json_string(result, session->protocol);
    result +=
        ",\"capabilities\":{\"tools\":{\"listChanged\":false}},\"serverInfo\":{\"name\":"
        "\"pgwarden\",\"version\":\"0.16\"},\"instructions\":\"SQL through pgwarden: every "
        "statement runs as the signed-in user under the gateway's policy (it may be refused or "
        "wait for a person's approval), results are masked, and everything is recorded. One "
        "statement per query call; say why in intent.\"}";
    return json_reply(res, 200, rpc_result(id, result));
  }

  const std::string sid = req.get_header_value("Mcp-Session-Id");
  if (sid.empty()) {
    return json_reply(res, 400,
                      rpc_error(id, -32000, "Bad Request: Mcp-Session-Id header is required"));
  }
  const auto session = find(sid);
  if (session == nullptr) return json_reply(res, 404, rpc_error(id, -32001, "no such MCP session"));
  if (!same_caller(session->who, *who)) {
    PGW_WARN("mcp: session %s of %s used with a token of %s: refused", sid.c_str(),
             session->who.identity.c_str(), who->identity.c_str());
    return json_reply(res, 403, rpc_error(id, -32001, "the MCP session belongs to another caller"));
  }
  session->last_used = now_ms();
  if (!has_method || !has_id) {
    res.status = 202;  // a notification or a response: nothing to answer
    return;
  }
  if (!params_ok) return json_reply(res, 200, rpc_error(id, -32602, "params must be an object"));
  if (method == "ping") return json_reply(res, 200, rpc_result(id, "{}"));
  if (method == "tools/list")
    return json_reply(res, 200, rpc_result(id, std::string("{\"tools\":") + kTools + "}"));
  if (method != "tools/call") {
    return json_reply(res, 200, rpc_error(id, -32601, "method not found: " + std::string(method)));
  }
  std::string_view tool;
  if (params["name"].get_string().get(tool) != sj::SUCCESS) {
    return json_reply(res, 200, rpc_error(id, -32602, "tools/call needs a tool name"));
  }
  sj::dom::object args;
  if (params["arguments"].get_object().get(args) != sj::SUCCESS) args = empty;
  std::string error;
  auto call = build_call(tool, args, options_.max_rows, error);
  if (!call) return json_reply(res, 200, rpc_error(id, -32602, error));
  std::string traceparent, tracestate;
  sj::dom::object meta;
  std::string_view v;
  if (params["_meta"].get_object().get(meta) == sj::SUCCESS) {
    if (meta["traceparent"].get_string().get(v) == sj::SUCCESS) traceparent = v.substr(0, 256);
    if (meta["tracestate"].get_string().get(v) == sj::SUCCESS) tracestate = v.substr(0, 512);
  }
  // Tool calls hold an admin connection while they run: at most half of them may, so approvals,
  // kills and locks always get through; and a call waits its turn on its session only so long.
  struct InFlight {
    std::atomic<unsigned>& n;
    ~InFlight() { n.fetch_sub(1); }
  } in_flight{in_flight_};
  if (in_flight_.fetch_add(1) >= options_.max_calls) {
    return json_reply(res, 503, rpc_error(id, -32001, "too many MCP tool calls in progress"));
  }
  // ... and no caller more than its share of them, running or waiting.
  struct CallerShare {
    McpServer& server;
    std::string principal;
    ~CallerShare() {
      std::lock_guard lock(server.mu_);
      if (--server.calls_of_[principal] == 0) server.calls_of_.erase(principal);
    }
  };
  {
    std::lock_guard lock(mu_);
    if (calls_of_[who->principal] >= kMaxCallsPerCaller) {
      if (calls_of_[who->principal] == 0) calls_of_.erase(who->principal);
      return json_reply(res, 429,
                        rpc_error(id, -32001, "too many tool calls of yours in progress"));
    }
    ++calls_of_[who->principal];
  }
  const CallerShare share{*this, who->principal};
  std::unique_lock call_lock(session->mu, std::defer_lock);
  if (!call_lock.try_lock_for(std::chrono::seconds(options_.call_timeout_s))) {
    return json_reply(res, 200,
                      rpc_result(id, text_error("pgwarden MCP: another call on this "
                                                "MCP session is still running")));
  }
  const std::uint64_t ordinal = ++session->calls;
  const policy::RoleMapping* m = options_.auth->map_groups(who->groups);
  if (m == nullptr) {
    return json_reply(res, 200,
                      rpc_result(id, text_error("pgwarden MCP: no role mapping for your groups")));
  }
  const std::string database = m->database.empty() ? "postgres" : m->database;
  // (A mapping that may change roles and one that may not never share a connection.)
  const std::string pool_key =
      m->role + '\0' + database + (m->allow_role_change ? "\0roles" : "\0role");
  const std::string caller = caller_key(*who);
  // A connection of the pool: this caller's own, or another's that passes to this caller (a
  // one-time login of theirs; pgwarden resets the session); else a new one.
  LinkPool::Lease lease = pool_.take(pool_key, caller);
  std::unique_ptr<PgLink> link = std::move(lease.link);
  if (link != nullptr && lease.caller != caller) {
    const auto login = options_.logins->issue(internal_caller(*who), now_s());
    if (!login || !link->hand_over(
                      policy::InternalLogins::handover_token(login->first, login->second), error)) {
      PGW_INFO("mcp: session %s: a pooled connection did not pass to %s (%s); opening another",
               sid.c_str(), who->identity.c_str(), error.c_str());
      link.reset();
    }
  }
  if (link == nullptr) {
    const auto login = options_.logins->issue(internal_caller(*who), now_s());
    if (!login) {
      return json_reply(res, 200,
                        rpc_result(id, text_error("pgwarden MCP: cannot open a session now")));
    }
    const PgLink::Params p{
        options_.gateway_host, options_.gateway_port, login->first, login->second, database,
        "pgwarden MCP"};
    link = PgLink::connect(p, error);
    if (link == nullptr) {
      PGW_WARN("mcp: session %s: login through the gateway failed: %s", sid.c_str(), error.c_str());
      // The server's refusal (locked, not allowed...) without where pgwarden listens.
      const std::size_t fatal = error.find("FATAL:");
      return json_reply(res, 200,
                        rpc_result(id, text_error(fatal != std::string::npos
                                                      ? "pgwarden MCP: " + error.substr(fatal)
                                                      : "pgwarden MCP: could not open a "
                                                        "session through the gateway")));
    }
  }
  // Back to the pool after the call, whatever it returns (unless it broke the connection).
  struct GiveBack {
    LinkPool& pool;
    const std::string& key;
    const std::string& caller;
    std::unique_ptr<PgLink>& link;
    ~GiveBack() { pool.give_back(key, caller, std::move(link)); }
  } give_back{pool_, pool_key, caller, link};
  // What the recording keeps beside the statement (pgwarden's own comment, read only from
  // sessions of MCP logins, where it comes first).
  std::string comment = "/*mcp_session='" + sid + "',mcp_call='" + std::to_string(ordinal) +
                        "',jsonrpc_id='" + url_encode(id) + "',tool='" + url_encode(tool) + "'";
  if (!call->intent.empty())
    comment += ",intent='" + url_encode(call->intent.substr(0, 1000)) + "'";
  if (!traceparent.empty()) comment += ",traceparent='" + url_encode(traceparent) + "'";
  if (!tracestate.empty()) comment += ",tracestate='" + url_encode(tracestate) + "'";
  if (!call->arguments.empty())
    comment += ",arguments='" + url_encode(call->arguments.substr(0, 1000)) + "'";
  if (!session->client_name.empty()) {
    comment +=
        ",mcp_client='" + url_encode(session->client_name + "/" + session->client_version) + "'";
  }
  comment += "*/ ";
  if (!call->probe.empty()) {
    const SqlResult probe =
        link->run(comment + call->probe, {}, 0, 0, options_.call_timeout_s * 1000);
    if (!probe.ok) return json_reply(res, 200, rpc_result(id, tool_result(probe)));
  }
  const SqlResult r = link->run(comment + call->sql, call->params, call->max_rows,
                                options_.max_result_bytes, options_.call_timeout_s * 1000);
  session->last_used = now_ms();
  return json_reply(res, 200, rpc_result(id, tool_result(r)));
}

}  // namespace pgwarden::core
