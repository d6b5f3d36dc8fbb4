#include "core/flags.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <stdexcept>

#include "protocol/http.h"

namespace pgwarden::core {
namespace {

// "localhost" or a loopback IP literal (not merely a name that starts with "127.").
bool loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return ::inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

// A custom (placeholder) setting: two or more identifiers joined by dots, e.g. pgwarden.identity.
bool valid_custom_setting(const std::string& name) {
  if (name.size() > 63 || name.find('.') == std::string::npos) return false;
  bool at_start = true;
  for (const char ch : name) {
    const bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
    const bool digit = ch >= '0' && ch <= '9';
    if (ch == '.') {
      if (at_start) return false;
      at_start = true;
    } else if (alpha || (!at_start && (digit || ch == '$'))) {
      at_start = false;
    } else {
      return false;
    }
  }
  return !at_start;
}

std::uint64_t parse_size(const std::string& flag, const std::string& v) {
  std::uint64_t n = 0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, n);
  if (ec != std::errc() || p == v.data()) throw std::runtime_error(flag + ": not a number: " + v);
  std::string suffix(p, end);
  std::uint64_t mul = 1;
  if (suffix == "k" || suffix == "K" || suffix == "KiB")
    mul = 1ull << 10;
  else if (suffix == "m" || suffix == "M" || suffix == "MiB")
    mul = 1ull << 20;
  else if (suffix == "g" || suffix == "G" || suffix == "GiB")
    mul = 1ull << 30;
  else if (!suffix.empty())
    throw std::runtime_error(flag + ": bad size suffix: " + v);
  return n * mul;
}

double parse_seconds(const std::string& flag, const std::string& v) {
  std::size_t used = 0;
  double d = 0;
  try {
    d = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || !std::isfinite(d) || d < 0) {
    throw std::runtime_error(flag + ": expected seconds >= 0, got: " + v);
  }
  return d;
}

unsigned parse_count(const std::string& flag, const std::string& v, std::uint64_t max) {
  const std::uint64_t n = parse_size(flag, v);
  if (n > max) throw std::runtime_error(flag + ": at most " + std::to_string(max));
  return static_cast<unsigned>(n);
}

}  // namespace

PeerSpec parse_peer(const std::string& spec) {
  const std::size_t eq = spec.find('=');
  unsigned id = 0;
  const char* end = spec.data() + (eq == std::string::npos ? 0 : eq);
  const auto [p, ec] = std::from_chars(spec.data(), end, id);
  if (eq == std::string::npos || ec != std::errc() || p != end || id < 1 || id > 31 ||
      spec.find(':', eq) == std::string::npos || spec.size() == eq + 1 || spec[eq + 1] == '/') {
    throw std::runtime_error("--peer: expected ID=HOST:PORT with ID 1-31, got: " + spec);
  }
  return PeerSpec{id, spec.substr(eq + 1)};
}

std::string usage() {
  return R"(usage: pgwarden --upstream HOST:PORT|SOCKET [flags]

Identity-aware PostgreSQL gateway. Clients connect to --listen; every session is relayed to
--upstream by the worker thread that accepted it.

  --listen HOST:PORT          where clients connect (default 127.0.0.1:6432; port 0 = any)
  --upstream HOST:PORT|PATH   the PostgreSQL server; or a unix socket file, or the socket
                              directory with an optional :PORT (as libpq's host=/dir port=N);
                              required
  --threads N                 worker threads, each pinned to a core (default: half the usable
                              cores, at least 1)
  --no-pin                    do not pin worker threads to cores (default: pinned)
  --max-buffered-bytes SIZE   per session and direction, memory queued for a slow reader
                              before reading from the other side pauses (default 512K)
  --max-message-size SIZE     largest protocol message accepted (default 1073741823)
  --max-statement-size SIZE   largest message pgwarden reads whole: statements it judges or
                              records, rows it masks (default 16M); larger ones get 54000
  --connect-timeout SECS      upstream connect timeout (default 5)
  --startup-timeout SECS      time from accept to ready-for-query (default 60)
  --idle-timeout SECS         close sessions idle this long, 0 = never (default 0)
  --shutdown-grace SECS       on SIGTERM/SIGINT, time sessions get to finish (default 10)
  --recv-buffers N            receive buffers per core, a power of two (default 2048)
  --recv-buffer-size SIZE     size of one receive buffer (default 16K)
  --log-level LEVEL           debug, info, warn or error (default info)
  --log-format FORMAT         text (default: "TIME LEVEL message") or json (one object a line:
                              time, level, msg, core, ...); written by a logger thread, so a
                              slow stderr never stalls a core (lines are dropped and counted)
  --log-rate-limit N          lines one message (call site) may write per second; the rest are
                              counted in one "repeated K times" line (default 20; 0: no limit)
  --admin-listen HOST:PORT    the admin API: GET /healthz, /readyz (no token), /metrics, and
                              /api/v1/approvals, /api/v1/reload (OIDC bearer tokens verified
                              with --jwks-file/--jwks-url; the policy's "admins" and rules'
                              "approvers" groups decide); beyond loopback only with TLS
                              (default: off)
  --admin-tls-cert FILE, --admin-tls-key FILE
                              PEM certificate chain and key of the admin API (HTTPS)
                              (default: none, plain HTTP on loopback)
  --admin-audience AUD        "aud" admin tokens must carry (repeatable; default --oidc-audience)
  --admin-host NAME           a Host name the admin API answers to besides its listen address
                              (repeatable; others get 421: DNS rebinding; default: none)
  --metrics-token-file FILE   a static token (mode 0600) Prometheus may send for GET /metrics
                              (default: none, admins' tokens only)
  --max-connections N         client connections at once; more are refused with 53300 once
                              their startup packet is read, as PostgreSQL does (default 10000;
                              0: no limit)
  --admin-max-connections N   concurrent admin connections; more are answered 503 (default 64)
  --peer-id N                 this instance's id, 1-31, carried in the cancel keys it hands out
                              when several instances share a load balancer; 0: no peering
                              (default 0)
  --peer ID=HOST:PORT         another instance's --listen address: a CancelRequest for a key it
                              issued is forwarded there (repeatable; the own id is ignored, so
                              every instance may get the same list; default: none)
  --mcp-url URL               serve MCP (Streamable HTTP) on the admin listener at this URL's
                              path; tokens must carry it as audience (needs gateway auth;
                              default: off)
  --mcp-max-sessions N        concurrent MCP sessions (default 64)
  --mcp-pool N                idle connections tool calls share, per mapped role; a connection
                              passes between callers with DISCARD ALL (default 4; 0: none kept)
  --mcp-pool-idle SECS        an idle pooled connection is closed after this (default 60)
  --mcp-call-timeout SECS     a tool call, approval wait included, is canceled after this
                              (default 60)
  --approval-timeout SECS     a statement held for approval is refused after this (default 300)
  --approval-webhook URL      POST each held statement and decision there as JSON with a "text"
                              field (Slack/Teams incoming webhooks show it); repeatable; retried
                              with backoff on failure, never delaying a session (default: none)
  --approval-webhook-secret-file FILE
                              key (mode 0600, at least 32 bytes) signing webhook bodies:
                              X-Pgwarden-Signature: sha256=HMAC-SHA256(key, body) in hex
                              (default: none; required with --approval-webhook)
  --approval-webhook-ca FILE  CA certificates for https webhook receivers (default: system CAs)
  --tls-cert FILE, --tls-key FILE
                              PEM certificate chain and key: clients may use TLS 1.2+
                              (SSLRequest answered 'S'); reloaded on SIGHUP (default: off)
  --upstream-tls MODE         TLS to the upstream, as libpq's sslmode: disable, prefer (default),
                              require, verify-ca, verify-full (not used on unix sockets)
  --upstream-tls-ca FILE      CA certificates for verify-ca/verify-full (default: system CAs)
  --upstream-tls-name NAME    name verify-full checks (default: the --upstream host)
  --upstream-pooler MODE      none (default), or transaction: --upstream is a pooler in
                              transaction mode (PgBouncer), where a named prepared statement
                              would not outlive the transaction; pgwarden keeps each one and
                              parses it again, unnamed, right before each use

Recording (tamper-evident session recordings; read them with pgwarden sessions|replay|verify|export):
  --record-dir DIR            record every session under DIR/core-NN/NNNNNNNN.pwrec
                              (default: off)
  --record-key-file FILE      key (at least 32 bytes, mode 0600) for the segments' HMAC seals
                              (default: none; required with --record-dir)
  --record-durability MODE    none (page cache), batch (synced writes every few ms; default),
                              or strict (a statement goes upstream only once its record is synced)
  --record-batch-ms MS        none/batch: write records out (batch: synced, RWF_DSYNC) at most
                              every MS milliseconds (default 10; 1-1000): a crash loses at most
                              about this much in batch mode
  --record-segment-size SIZE  rotate segments at this size (default 64M)
  --record-segment-age SECS   ... or this age (default 300): the open segment is unsealed
  --record-max-backlog SIZE   unwritten records per core before statements are refused
                              (default 64M)
  --record-rows N             also record the first N result rows of each statement (default 0)

Gateway authentication (clients never hold a database credential):
  --policy FILE               JSON with "role_mappings": [{"group", "role", "database"}],
                              statement "rules" and "masking" profiles (policy.example.json);
                              rules and masking reload on SIGHUP (default: none)
  --mask-key-file FILE        key (at least 32 bytes, mode 0600) of the "hash" masking action's
                              pseudonyms (default: a random key per start, so pseudonyms change)
  --upstream-secrets FILE     lines "role password": the only database credentials (mode 0600);
                              or env:NAME to read them from environment variable NAME
                              (default: none, clients log in to PostgreSQL themselves)
  --jwks-file FILE            identity provider keys: clients send an OIDC token as password
                              (default: none)
  --jwks-url URL              or fetch them (https; http only from loopback) at start and
                              every --jwks-refresh, and early when a token
                              names an unknown kid (at most every 10 s) (default: none)
  --jwks-refresh SECS         how often --jwks-url is fetched again (default 300)
  --jwks-ca FILE              CA certificates for an https --jwks-url (default: system CAs)
  --oidc-issuer ISS           accepted "iss" (repeatable; required with --jwks-file/--jwks-url;
                              default: none)
  --oidc-audience AUD         required "aud" (repeatable; needed with --jwks-file; default: none)
  --identity-claim NAME       claim naming the caller (default email, fallback sub)
  --groups-claim NAME         claim listing the caller's groups (default groups)
  --identity-guc NAME         also set custom setting NAME (e.g. pgwarden.identity) to the caller's
                              identity upstream (application_name always carries it;
                              default: none)
  --clock-skew SECS           tolerance on exp/nbf/iat (default 60)
  --token-grace SECS          how long past exp a session may run (default 0)
  --users-file FILE           static users: lines "name SCRAM-SHA-256$... group,group"
                              (default: none)
  --allow-plaintext-auth      also accept tokens without TLS, on a loopback --listen only
                              (default: off)
  --auth-failure-limit N      failed logins per source address and window before refusing
                              that address until the window ends (per core; default 10, 0 = off)
  --auth-failure-window SECS  (default 60)
  --version, --help           print the version, or this text, and exit
Sizes accept K, M and G suffixes.
)";
}

namespace {

using Setter = std::function<void(const std::string&)>;

// The flags that take a value, each with what it sets in `c`: the parser's one list of them.
std::map<std::string, Setter> value_flags(Config& c) {
  return {
      {"--listen", [&](const std::string& v) { c.listen = v; }},
      {"--upstream", [&](const std::string& v) { c.upstream = v; }},
      {"--threads", [&](const std::string& v) { c.threads = parse_count("--threads", v, 256); }},
      {"--max-buffered-bytes",
       [&](const std::string& v) { c.max_buffered_bytes = parse_size("--max-buffered-bytes", v); }},
      {"--max-message-size",
       [&](const std::string& v) {
         c.max_message_size = parse_count("--max-message-size", v, (1u << 30) - 1);
       }},
      {"--max-statement-size",
       [&](const std::string& v) {
         c.max_statement_size = static_cast<std::uint32_t>(
             std::min<std::uint64_t>(parse_size("--max-statement-size", v), (1u << 30) - 1));
       }},
      {"--connect-timeout",
       [&](const std::string& v) { c.connect_timeout_s = parse_seconds("--connect-timeout", v); }},
      {"--startup-timeout",
       [&](const std::string& v) { c.startup_timeout_s = parse_seconds("--startup-timeout", v); }},
      {"--idle-timeout",
       [&](const std::string& v) { c.idle_timeout_s = parse_seconds("--idle-timeout", v); }},
      {"--shutdown-grace",
       [&](const std::string& v) { c.shutdown_grace_s = parse_seconds("--shutdown-grace", v); }},
      {"--recv-buffers",
       [&](const std::string& v) { c.recv_buffers = parse_count("--recv-buffers", v, 32768); }},
      {"--recv-buffer-size",
       [&](const std::string& v) {
         c.recv_buffer_size = parse_count("--recv-buffer-size", v, 1u << 20);
       }},
      {"--log-level", [&](const std::string& v) { c.log_level = v; }},
      {"--log-format", [&](const std::string& v) { c.log_format = v; }},
      {"--log-rate-limit",
       [&](const std::string& v) {
         c.log_rate_limit = parse_count("--log-rate-limit", v, 1'000'000);
       }},
      {"--admin-listen", [&](const std::string& v) { c.admin_listen = v; }},
      {"--admin-tls-cert", [&](const std::string& v) { c.admin_tls_cert_file = v; }},
      {"--admin-tls-key", [&](const std::string& v) { c.admin_tls_key_file = v; }},
      {"--admin-audience", [&](const std::string& v) { c.admin_audiences.push_back(v); }},
      {"--admin-host", [&](const std::string& v) { c.admin_hosts.push_back(v); }},
      {"--metrics-token-file", [&](const std::string& v) { c.metrics_token_file = v; }},
      {"--max-connections",
       [&](const std::string& v) {
         c.max_connections = parse_count("--max-connections", v, 10'000'000);
       }},
      {"--peer-id", [&](const std::string& v) { c.peer_id = parse_count("--peer-id", v, 31); }},
      {"--peer", [&](const std::string& v) { c.peers.push_back(v); }},
      {"--admin-max-connections",
       [&](const std::string& v) {
         c.admin_max_connections = parse_count("--admin-max-connections", v, 4096);
       }},
      {"--mcp-url", [&](const std::string& v) { c.mcp_url = v; }},
      {"--mcp-max-sessions",
       [&](const std::string& v) {
         c.mcp_max_sessions = parse_count("--mcp-max-sessions", v, 4096);
       }},
      {"--mcp-pool", [&](const std::string& v) { c.mcp_pool = parse_count("--mcp-pool", v, 256); }},
      {"--mcp-pool-idle",
       [&](const std::string& v) { c.mcp_pool_idle_s = parse_seconds("--mcp-pool-idle", v); }},
      {"--mcp-call-timeout",
       [&](const std::string& v) {
         c.mcp_call_timeout_s = parse_seconds("--mcp-call-timeout", v);
       }},
      {"--approval-timeout",
       [&](const std::string& v) {
         c.approval_timeout_s = parse_seconds("--approval-timeout", v);
       }},
      {"--approval-webhook", [&](const std::string& v) { c.approval_webhooks.push_back(v); }},
      {"--approval-webhook-secret-file",
       [&](const std::string& v) { c.approval_webhook_secret_file = v; }},
      {"--approval-webhook-ca", [&](const std::string& v) { c.approval_webhook_ca_file = v; }},
      {"--policy", [&](const std::string& v) { c.policy_file = v; }},
      {"--tls-cert", [&](const std::string& v) { c.tls_cert_file = v; }},
      {"--tls-key", [&](const std::string& v) { c.tls_key_file = v; }},
      {"--upstream-tls", [&](const std::string& v) { c.upstream_tls = v; }},
      {"--upstream-tls-ca", [&](const std::string& v) { c.upstream_tls_ca_file = v; }},
      {"--upstream-tls-name", [&](const std::string& v) { c.upstream_tls_name = v; }},
      {"--upstream-pooler", [&](const std::string& v) { c.upstream_pooler = v; }},
      {"--upstream-secrets", [&](const std::string& v) { c.upstream_secrets_file = v; }},
      {"--jwks-file", [&](const std::string& v) { c.jwks_file = v; }},
      {"--users-file", [&](const std::string& v) { c.users_file = v; }},
      {"--oidc-issuer", [&](const std::string& v) { c.oidc_issuers.push_back(v); }},
      {"--oidc-audience", [&](const std::string& v) { c.oidc_audiences.push_back(v); }},
      {"--identity-claim", [&](const std::string& v) { c.identity_claim = v; }},
      {"--groups-claim", [&](const std::string& v) { c.groups_claim = v; }},
      {"--identity-guc", [&](const std::string& v) { c.identity_guc = v; }},
      {"--record-dir", [&](const std::string& v) { c.record_dir = v; }},
      {"--record-key-file", [&](const std::string& v) { c.record_key_file = v; }},
      {"--mask-key-file", [&](const std::string& v) { c.mask_key_file = v; }},
      {"--record-durability", [&](const std::string& v) { c.record_durability = v; }},
      {"--record-batch-ms",
       [&](const std::string& v) {
         c.record_batch_ms = parse_count("--record-batch-ms", v, 1000);
       }},
      {"--record-segment-size",
       [&](const std::string& v) {
         c.record_segment_bytes = parse_size("--record-segment-size", v);
       }},
      {"--record-segment-age",
       [&](const std::string& v) {
         c.record_segment_age_s = parse_seconds("--record-segment-age", v);
       }},
      {"--record-rows",
       [&](const std::string& v) { c.record_rows = parse_count("--record-rows", v, 1u << 20); }},
      {"--record-max-backlog",
       [&](const std::string& v) { c.record_max_backlog = parse_size("--record-max-backlog", v); }},
      {"--jwks-url", [&](const std::string& v) { c.jwks_url = v; }},
      {"--jwks-ca", [&](const std::string& v) { c.jwks_ca_file = v; }},
      {"--jwks-refresh",
       [&](const std::string& v) { c.jwks_refresh_s = parse_seconds("--jwks-refresh", v); }},
      {"--clock-skew",
       [&](const std::string& v) { c.clock_skew_s = parse_seconds("--clock-skew", v); }},
      {"--auth-failure-limit",
       [&](const std::string& v) {
         c.auth_failure_limit = parse_count("--auth-failure-limit", v, 1u << 20);
       }},
      {"--auth-failure-window",
       [&](const std::string& v) {
         c.auth_failure_window_s = parse_seconds("--auth-failure-window", v);
       }},
      {"--token-grace",
       [&](const std::string& v) { c.token_grace_s = parse_seconds("--token-grace", v); }},
  };
}

// Flags without a value: the setting each changes, and to what.
struct Switch {
  bool Config::*field;
  bool value;
};
const std::map<std::string, Switch> kSwitches = {
    {"--no-pin", {&Config::pin_threads, false}},
    {"--allow-plaintext-auth", {&Config::allow_plaintext_auth, true}},
};

}  // namespace

std::vector<std::string> flag_names() {
  Config c;
  std::vector<std::string> names{"--help", "--version"};
  for (const auto& [name, set] : value_flags(c)) names.push_back(name);
  for (const auto& [name, sw] : kSwitches) names.push_back(name);
  return names;
}

ParsedFlags parse_flags(const std::vector<std::string>& args) {
  ParsedFlags out;
  Config& c = out.config;
  const std::map<std::string, Setter> with_value = value_flags(c);
  try {
    for (std::size_t i = 0; i < args.size(); ++i) {
      std::string name = args[i];
      std::string value;
      bool has_value = false;
      if (const auto eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      if (name == "--help" || name == "-h") {
        out.exit_now = true;
        out.message = usage();
        return out;
      }
      if (name == "--version") {
        out.exit_now = true;
        out.message = "version";
        return out;
      }
      if (const auto sw = kSwitches.find(name); sw != kSwitches.end()) {
        if (has_value) throw std::runtime_error(name + " takes no value");
        c.*(sw->second.field) = sw->second.value;
        continue;
      }
      const auto it = with_value.find(name);
      if (it == with_value.end()) throw std::runtime_error("unknown flag: " + name);
      if (!has_value) {
        if (i + 1 >= args.size()) throw std::runtime_error(name + " needs a value");
        value = args[++i];
      }
      it->second(value);
    }
    if (c.upstream.empty()) throw std::runtime_error("--upstream is required");
    if (c.recv_buffers == 0 || (c.recv_buffers & (c.recv_buffers - 1)) != 0) {
      throw std::runtime_error("--recv-buffers must be a power of two");
    }
    if (c.recv_buffer_size < 512) throw std::runtime_error("--recv-buffer-size must be >= 512");
    if (c.max_message_size < 1024) throw std::runtime_error("--max-message-size must be >= 1024");
    if (c.max_statement_size < 1024) {
      throw std::runtime_error("--max-statement-size must be >= 1024");
    }
    if (c.max_buffered_bytes < c.recv_buffer_size) {
      throw std::runtime_error("--max-buffered-bytes must be at least --recv-buffer-size");
    }
    const bool oidc = c.oidc();
    // Keys without --upstream-secrets verify the admin API's tokens only.
    const bool any_auth = !c.upstream_secrets_file.empty() || !c.users_file.empty() ||
                          (oidc && c.admin_listen.empty());
    if (any_auth && (c.policy_file.empty() || c.upstream_secrets_file.empty() ||
                     (!oidc && c.users_file.empty()))) {
      throw std::runtime_error(
          "gateway authentication needs --policy, --upstream-secrets and at least one of "
          "--jwks-file, --jwks-url or --users-file");
    }
    for (const auto& hook : c.approval_webhooks) {
      const auto url = protocol::parse_url(hook);
      if (!url) throw std::runtime_error("--approval-webhook: " + url.error().message);
      if (!url->tls && !loopback_host(url->host)) {
        throw std::runtime_error(
            "--approval-webhook must use https (http only for a loopback host): statements "
            "travel in it");
      }
    }
    if (!c.approval_webhooks.empty() && c.approval_webhook_secret_file.empty()) {
      throw std::runtime_error(
          "--approval-webhook needs --approval-webhook-secret-file (receivers must be able to "
          "tell pgwarden's notifications from forged ones)");
    }
    if (!c.mcp_url.empty()) {
      const auto url = protocol::parse_url(c.mcp_url);
      if (!url) throw std::runtime_error("--mcp-url: " + url.error().message);
      if (c.admin_listen.empty() || !c.gateway_auth() || !oidc) {
        throw std::runtime_error(
            "--mcp-url needs --admin-listen and gateway authentication with OIDC keys "
            "(--policy, --upstream-secrets, --jwks-file/--jwks-url)");
      }
      if (c.mcp_call_timeout_s < 1) throw std::runtime_error("--mcp-call-timeout must be >= 1");
    }
    if (!c.approval_webhooks.empty() && c.admin_listen.empty()) {
      throw std::runtime_error(
          "--approval-webhook needs --admin-listen (without it nothing is held for approval)");
    }
    if (c.admin_tls_cert_file.empty() != c.admin_tls_key_file.empty()) {
      throw std::runtime_error("--admin-tls-cert and --admin-tls-key go together");
    }
    if (!c.jwks_file.empty() && !c.jwks_url.empty()) {
      throw std::runtime_error("--jwks-file and --jwks-url exclude each other");
    }
    if (!c.jwks_url.empty()) {
      const auto url = protocol::parse_url(c.jwks_url);
      if (!url) throw std::runtime_error("--jwks-url: " + url.error().message);
      // Whoever can change the keys can mint any identity: plain HTTP only on this host.
      if (!url->tls && !loopback_host(url->host)) {
        throw std::runtime_error("--jwks-url must use https (http only for a loopback host)");
      }
      if (c.jwks_refresh_s < 1) throw std::runtime_error("--jwks-refresh must be >= 1 second");
    }
    if (!c.identity_guc.empty() && !valid_custom_setting(c.identity_guc)) {
      throw std::runtime_error(
          "--identity-guc: expected a custom setting name such as pgwarden.identity");
    }
    if (c.upstream_tls != "disable" && c.upstream_tls != "prefer" && c.upstream_tls != "require" &&
        c.upstream_tls != "verify-ca" && c.upstream_tls != "verify-full") {
      throw std::runtime_error(
          "--upstream-tls: expected disable, prefer, require, verify-ca or verify-full");
    }
    if (c.upstream_pooler != "none" && c.upstream_pooler != "transaction") {
      throw std::runtime_error("--upstream-pooler: expected none or transaction");
    }
    if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
      throw std::runtime_error("--tls-cert and --tls-key go together");
    }
    if (oidc && c.oidc_issuers.empty()) {
      throw std::runtime_error(
          "--jwks-file/--jwks-url need --oidc-issuer (a key set may sign for more than one "
          "issuer; tokens from any other must not work)");
    }
    if (oidc && c.oidc_audiences.empty() && (c.gateway_auth() || c.admin_audiences.empty())) {
      throw std::runtime_error(
          "--jwks-file/--jwks-url need --oidc-audience (tokens for other services must not work)");
    }
    if (!c.record_dir.empty() && c.record_key_file.empty()) {
      throw std::runtime_error(
          "--record-dir needs --record-key-file (the key that seals segments)");
    }
    if (c.record_durability != "none" && c.record_durability != "batch" &&
        c.record_durability != "strict") {
      throw std::runtime_error("--record-durability: expected none, batch or strict");
    }
    if (c.record_segment_bytes < 4096) {
      throw std::runtime_error("--record-segment-size must be at least 4K");
    }
    if (c.record_batch_ms < 1) throw std::runtime_error("--record-batch-ms must be >= 1");
    if (c.record_segment_age_s < 1) throw std::runtime_error("--record-segment-age must be >= 1");
    if (c.record_max_backlog < (1u << 20)) {
      throw std::runtime_error("--record-max-backlog must be at least 1M");
    }
    if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" &&
        c.log_level != "error") {
      throw std::runtime_error("--log-level: expected debug, info, warn or error");
    }
    if (c.log_format != "text" && c.log_format != "json") {
      throw std::runtime_error("--log-format: expected text or json");
    }
    if (!c.peers.empty() && c.peer_id == 0) {
      throw std::runtime_error("--peer needs --peer-id: this instance's own id");
    }
    std::vector<bool> seen(32);
    for (const std::string& spec : c.peers) {
      const PeerSpec p = parse_peer(spec);
      if (seen[p.id]) throw std::runtime_error("--peer: id " + std::to_string(p.id) + " twice");
      seen[p.id] = true;
    }
  } catch (const std::exception& e) {
    out.exit_now = true;
    out.exit_code = 2;
    out.message = std::string("pgwarden: ") + e.what() + "\n(see pgwarden --help)\n";
  }
  return out;
}

}  // namespace pgwarden::core
