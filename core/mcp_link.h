// The MCP endpoint's connection to pgwarden's own listener (libpq): each tool call's statement
// goes through a pgwarden session like any wire client's, so every stage applies. One connection
// per MCP session, reused by its calls. Blocking; used on the admin HTTP server's threads.
#pragma once

#include <cstdint>
#include <memory>
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

 private:
  explicit PgLink(pg_conn* c) : conn_(c) {}
  bool wait_readable(std::int64_t deadline_ms);
  void drain(SqlResult& out, std::size_t max_rows, std::size_t max_bytes, std::int64_t deadline);
  pg_conn* conn_ = nullptr;
  std::vector<std::string> notices_;
  bool broken_ = false;
};

}  // namespace pgwarden::core
