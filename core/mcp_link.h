// The MCP endpoint's connections to pgwarden's own listener (libpq): each tool call's statement
// goes through a pgwarden session like any wire client's, so every stage applies. Connections are
// pooled per mapped role and database (LinkPool) and lent to one call at a time; one that served
// another caller passes to this call's caller first (hand_over: core/session_handover.cc).
// Blocking; used on the admin HTTP server's threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct pg_conn;

namespace pgwarden::core {

struct SqlResult {
  bool ok = false;
  std::string sqlstate, message;  // !ok
  std::string command;            // ok: the command tag
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;  // text values; nullopt: NULL
  std::uint64_t row_count = 0;  // rows the statement returned (more than `rows` if truncated)
  bool truncated = false;       // rows or bytes beyond the caps were not kept
  bool timed_out = false;       // canceled after the call's deadline
  std::vector<std::string> notices;
};

class PgLink {
 public:
  struct Params {
    std::string host;  // pgwarden's listener
    int port = 0;
    std::string user, password, database, application_name;
  };
  // Connects (within 5 s); null with `error` set on failure.
  static std::unique_ptr<PgLink> connect(const Params& p, std::string& error);
  ~PgLink();
  PgLink(const PgLink&) = delete;
  PgLink& operator=(const PgLink&) = delete;

  // Runs one statement with text parameters (extended protocol: one statement only), keeping at
  // most `max_rows` rows and `max_bytes` of values; canceled after `timeout_ms`. A statement that
  // leaves a transaction open is rolled back and reported as an error.
  SqlResult run(const std::string& sql, const std::vector<std::optional<std::string>>& params,
                std::size_t max_rows, std::size_t max_bytes, int timeout_ms);
  // The connection is usable (not broken by a failure or a timeout).
  bool usable() const;
  // Usable, idle, and not closed by the other end meanwhile (e.g. --idle-timeout): reads what
  // has arrived without waiting.
  bool alive();
  // The pooled session passes to another caller: `token` from InternalLogins::handover_token.
  // False (and the link unusable) when refused; `error` says why.
  bool hand_over(const std::string& token, std::string& error);

 private:
  explicit PgLink(pg_conn* c) : conn_(c) {}
  bool wait_readable(std::int64_t deadline_ms);
  void drain(SqlResult& out, std::size_t max_rows, std::size_t max_bytes, std::int64_t deadline);
  pg_conn* conn_ = nullptr;
  std::vector<std::string> notices_;
  bool broken_ = false;
  bool retire_ = false;         // a cancel was sent: closed after this call, never pooled
  std::size_t kept_bytes_ = 0;  // values kept by the call in progress
};

// Idle links, per pool key (mapped role and database), each with the caller whose session it is
// now. At most `per_key` idle links per key; a link idle for longer than `idle_ms` is closed.
class LinkPool {
 public:
  LinkPool(std::size_t per_key, std::int64_t idle_ms) : per_key_(per_key), idle_ms_(idle_ms) {}
  struct Lease {
    std::unique_ptr<PgLink> link;  // null: none idle (connect a new one)
    std::string caller;            // whose session it is
  };
  // An idle, live link for `key`: the caller's own if one is idle, else another caller's.
  Lease take(const std::string& key, const std::string& caller);
  // A link back after a call (kept if it is usable and there is room, else closed).
  void give_back(const std::string& key, std::string caller, std::unique_ptr<PgLink> link);
  std::size_t idle() const;
  // Closes the links idle for longer than the limit (also done by give_back).
  void expire();

 private:
  struct Idle {
    std::unique_ptr<PgLink> link;
    std::string caller;
    std::int64_t since_ms = 0;
  };
  const std::size_t per_key_;
  const std::int64_t idle_ms_;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<Idle>> idle_;
};

}  // namespace pgwarden::core
