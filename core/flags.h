// Command-line flags of `pgwarden` (the gateway). Parsed once at start-up; errors throw.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgwarden::core {

struct Config {
  std::string listen = "127.0.0.1:6432";
  std::string upstream;                             // required
  unsigned threads = 0;                             // 0 = online cores
  std::uint64_t max_buffered_bytes = 1u << 20;      // per session and direction
  std::uint32_t max_message_size = (1u << 30) - 1;  // PostgreSQL's own MaxAllocSize
  // The largest message pgwarden reads whole (statements it judges, rows it masks); larger ones
  // are refused (54000).
  std::uint32_t max_statement_size = 16u << 20;
  double connect_timeout_s = 5;
  double startup_timeout_s = 60;
  double idle_timeout_s = 0;  // 0 = never
  double shutdown_grace_s = 10;
  unsigned recv_buffers = 2048;  // per core, power of two
  unsigned recv_buffer_size = 16384;
  bool pin_threads = true;
  std::string log_level = "info";
  std::string log_format = "text";  // text or json, one line per message
  unsigned log_rate_limit = 20;     // lines per call site per second (0: no limit)
  // The admin API (HOST:PORT; "" = off): /healthz /readyz /metrics and /api/v1/... (bearer
  // tokens). Beyond loopback only with TLS.
  std::string admin_listen;
  std::string admin_tls_cert_file, admin_tls_key_file;
  std::vector<std::string> admin_audiences;  // "aud" of admin tokens (default: oidc_audiences)
  std::vector<std::string> admin_hosts;      // Host names accepted besides the listen address
  std::string metrics_token_file;            // a static bearer token for GET /metrics
  unsigned admin_max_connections = 64;
  // The MCP endpoint (on the admin listener): its public URL (the tokens' audience); "" = off.
  std::string mcp_url;
  unsigned max_connections = 10000;  // client connections at once (0: no limit)
  // Several instances behind one load balancer: this instance's id (1..31, carried in the
  // cancel keys it issues; 0: no peering) and the others' SQL listeners, "ID=HOST:PORT", to which
  // a CancelRequest for their keys is forwarded.
  unsigned peer_id = 0;
  std::vector<std::string> peers;
  unsigned mcp_max_sessions = 64;
  unsigned mcp_pool = 4;        // idle connections per mapped role
  double mcp_pool_idle_s = 60;  // an idle pooled connection is closed after this
  double mcp_call_timeout_s = 60;
  double approval_timeout_s = 300;             // a held statement not decided by then is refused
  std::vector<std::string> approval_webhooks;  // URLs told of each held statement and decision
  std::string approval_webhook_secret_file;    // HMAC-SHA256 key signing their bodies
  std::string approval_webhook_ca_file;        // CA certificates for https receivers

  // Gateway authentication (all of policy, upstream_secrets and jwks_file/users_file, or none).
  std::string policy_file;
  std::string upstream_secrets_file;
  std::string jwks_file;
  std::string users_file;
  std::vector<std::string> oidc_issuers;
  std::vector<std::string> oidc_audiences;
  std::string identity_claim = "email";
  std::string groups_claim = "groups";
  std::string
      identity_guc;      // also pass the identity as this custom setting (e.g. pgwarden.identity)
  std::string jwks_url;  // fetched at start and every jwks_refresh_s in the background
  std::string jwks_ca_file;  // CA certificates for an https jwks_url (default: system CAs)
  double jwks_refresh_s = 300;
  double clock_skew_s = 60;
  double token_grace_s = 0;
  bool allow_plaintext_auth = false;
  std::string tls_cert_file;  // both set: clients may use TLS (SSLRequest answered 'S')
  std::string tls_key_file;
  std::string upstream_tls = "prefer";  // disable, prefer, require, verify-ca, verify-full
  std::string upstream_tls_ca_file;
  std::string upstream_tls_name;  // verify-full: name to check (default: --upstream's host)
  // What runs between pgwarden and PostgreSQL: none, or transaction (a pooler such as PgBouncer
  // in transaction mode: no named prepared statement is left on the server).
  std::string upstream_pooler = "none";
  // Recording (off unless record_dir is set).
  std::string record_dir;
  std::string record_key_file;
  std::string record_durability = "batch";  // none, batch, strict
  unsigned record_batch_ms = 10;            // none/batch: write (batch: synced) at most this often
  std::uint64_t record_segment_bytes = 64u << 20;
  double record_segment_age_s = 300;
  std::uint64_t record_max_backlog = 64u << 20;  // unwritten bytes per core before refusing
  unsigned record_rows = 0;                      // result rows recorded per statement
  std::string mask_key_file;         // key of masking's hash pseudonyms ("" = random per start)
  unsigned auth_failure_limit = 10;  // per source address and window, per core; 0 = off
  double auth_failure_window_s = 60;

  // Gateway authentication: pgwarden holds the upstream credentials. Without it, a --policy file
  // still judges statements (rules keyed on the startup user name).
  bool gateway_auth() const { return !upstream_secrets_file.empty(); }
  // Keys to verify tokens with (SQL callers' with gateway authentication; the admin API's always).
  bool oidc() const { return !jwks_file.empty() || !jwks_url.empty(); }
};

// Result of parsing: either a config to run, or text to print and an exit code.
struct ParsedFlags {
  Config config;
  bool exit_now = false;
  int exit_code = 0;
  std::string message;  // help, version or the error
};

// One --peer: "ID=HOST:PORT" with ID 1..31. Throws std::runtime_error.
struct PeerSpec {
  unsigned id;
  std::string address;  // HOST:PORT
};
PeerSpec parse_peer(const std::string& spec);

ParsedFlags parse_flags(const std::vector<std::string>& args);

std::string usage();

// Every flag the parser accepts (for the test that holds --help and README.md to it).
std::vector<std::string> flag_names();

}  // namespace pgwarden::core
