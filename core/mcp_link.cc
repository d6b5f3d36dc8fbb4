#include "core/mcp_link.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <chrono>

namespace pgwarden::core {

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr std::size_t kMaxNotices = 20;
constexpr std::size_t kMaxNoticeBytes = 1024;  // each notice, and an error's message, clipped
constexpr std::size_t kMaxMessageBytes = 4096;

std::string clipped(const char* s, std::size_t max) {
  std::string out = s != nullptr ? s : "";
  if (out.size() > max) out = out.substr(0, max) + "...";
  return out;
}

void take_error(const PGresult* r, SqlResult& out) {
  out.ok = false;
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  out.sqlstate = state != nullptr ? state : "";
  out.message = clipped(msg != nullptr ? msg : PQresultErrorMessage(r), kMaxMessageBytes);
}

}  // namespace

std::unique_ptr<PgLink> PgLink::connect(const Params& p, std::string& error) {
  const std::string port = std::to_string(p.port);
  const char* keys[] = {"host",
                        "port",
                        "user",
                        "password",
                        "dbname",
                        "sslmode",
                        "connect_timeout",
                        "application_name",
                        nullptr};
  const char* values[] = {p.host.c_str(),
                          port.c_str(),
                          p.user.c_str(),
                          p.password.c_str(),
                          p.database.c_str(),
                          "prefer",
                          "5",
                          p.application_name.c_str(),
                          nullptr};
  PGconn* c = PQconnectdbParams(keys, values, 0);
  if (c == nullptr || PQstatus(c) != CONNECTION_OK) {
    error = c != nullptr ? PQerrorMessage(c) : "out of memory";
    while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
    if (c != nullptr) PQfinish(c);
    return nullptr;
  }
  std::unique_ptr<PgLink> link(new PgLink(c));
  PQsetNoticeReceiver(
      c,
      [](void* arg, const PGresult* r) {
        auto* notices = static_cast<std::vector<std::string>*>(arg);
        const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        if (msg != nullptr && notices->size() < kMaxNotices) {
          notices->push_back(clipped(msg, kMaxNoticeBytes));
        }
      },
      &link->notices_);
  PQsetnonblocking(c, 0);
  return link;
}

PgLink::~PgLink() {
  if (conn_ != nullptr) PQfinish(conn_);
}

bool PgLink::usable() const {
  return !broken_ && PQstatus(conn_) == CONNECTION_OK;
}

bool PgLink::wait_readable(std::int64_t deadline_ms) {
  for (;;) {
    const std::int64_t left = deadline_ms - now_ms();
    if (left <= 0) return false;
    pollfd p{PQsocket(conn_), POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left > 1000 ? 1000 : left));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// Reads results until the statement is done (or the deadline): rows beyond the caps are counted,
// not kept, so a huge result costs no memory.
void PgLink::drain(SqlResult& out, std::size_t max_rows, std::size_t max_bytes,
                   std::int64_t deadline) {
  std::size_t& bytes = kept_bytes_;  // one budget for the call, the drain after a cancel included
  bool first = true;
  for (;;) {
    while (PQisBusy(conn_)) {
      if (!wait_readable(deadline) || PQconsumeInput(conn_) == 0) {
        out.timed_out = now_ms() >= deadline;
        if (!out.timed_out) {
          broken_ = true;
          out.ok = false;
          out.sqlstate = "08006";
          out.message = "pgwarden MCP: the connection through the gateway was lost: " +
                        clipped(PQerrorMessage(conn_), kMaxMessageBytes);
        }
        return;
      }
    }
    // LISTEN's notifications are not for tools: freed as they come (libpq would keep them all).
    while (PGnotify* n = PQnotifies(conn_)) PQfreemem(n);
    // Results that keep coming without a wait are bounded too; one not taken yet stays for the
    // drain after the cancel (it may be the statement's completion).
    if (now_ms() >= deadline) {
      out.timed_out = true;
      return;
    }
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) return;
    switch (PQresultStatus(r)) {
      case PGRES_SINGLE_TUPLE:
      case PGRES_TUPLES_OK: {
        if (first && out.columns.empty()) {
          for (int c = 0; c < PQnfields(r); ++c) out.columns.emplace_back(PQfname(r, c));
          first = false;
        }
        for (int row = 0; row < PQntuples(r); ++row) {
          ++out.row_count;
          if (out.rows.size() >= max_rows || bytes >= max_bytes) {
            out.truncated = true;
            continue;
          }
          auto& values = out.rows.emplace_back();
          for (int c = 0; c < PQnfields(r); ++c) {
            if (PQgetisnull(r, row, c)) {
              values.emplace_back(std::nullopt);
            } else {
              // A value larger than what is left of the budget is cut (and says so).
              const auto len = static_cast<std::size_t>(PQgetlength(r, row, c));
              const std::size_t room = bytes < max_bytes ? max_bytes - bytes : 0;
              values.emplace_back(std::string(PQgetvalue(r, row, c), std::min(len, room)));
              if (len > room) out.truncated = true;
              bytes += values.back()->size();
            }
          }
        }
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
          out.ok = true;
          out.command = PQcmdStatus(r);
        }
        break;
      }
      case PGRES_COMMAND_OK:
        out.ok = true;
        out.command = PQcmdStatus(r);
        break;
      case PGRES_EMPTY_QUERY:
        out.ok = false;
        out.sqlstate = "42601";
        out.message = "empty statement";
        break;
      case PGRES_FATAL_ERROR:
      case PGRES_BAD_RESPONSE:
      case PGRES_NONFATAL_ERROR:
        take_error(r, out);
        break;
      default:  // COPY and the rest: not for tool calls
        out.ok = false;
        out.sqlstate = "0A000";
        out.message = "pgwarden MCP: COPY and other streaming commands are not available to tools";
        broken_ = true;  // the connection is mid-COPY: it is dropped, the next call opens another
        PQclear(r);
        return;
    }
    PQclear(r);
  }
}

bool PgLink::alive() {
  if (retire_ || !usable() || PQtransactionStatus(conn_) != PQTRANS_IDLE) return false;
  // An idle session has nothing to say but its end (idle timeout, an administrator's kill or
  // lock, a notification of a LISTEN): whatever arrived, the link is not lent again.
  pollfd p{PQsocket(conn_), POLLIN, 0};
  if (::poll(&p, 1, 0) != 0) broken_ = true;
  return !broken_;
}

bool PgLink::hand_over(const std::string& token, std::string& error) {
  SqlResult out;
  // A simple Query of its own, as pgwarden takes pgwarden.token.
  if (PQsendQuery(conn_, ("SET pgwarden.token = '" + token + "'").c_str()) == 0) {
    broken_ = true;
    error = clipped(PQerrorMessage(conn_), kMaxMessageBytes);
    return false;
  }
  drain(out, 0, 0, now_ms() + 5000);
  notices_.clear();
  if (!out.ok || out.timed_out || !usable()) {
    broken_ = true;
    error = out.message.empty() ? "no answer" : out.message;
    return false;
  }
  return true;
}

LinkPool::Lease LinkPool::take(const std::string& key, const std::string& caller) {
  expire();
  for (;;) {
    Idle got;
    {
      std::lock_guard lock(mu_);
      const auto it = idle_.find(key);
      if (it == idle_.end()) return {};
      auto& v = it->second;
      // The caller's own, else the most recently used (the last is the newest).
      auto pick =
          std::find_if(v.rbegin(), v.rend(), [&](const Idle& x) { return x.caller == caller; });
      if (pick == v.rend()) pick = v.rbegin();
      if (pick != v.rend()) {
        got = std::move(*pick);
        v.erase(std::next(pick).base());
      }
      if (v.empty()) idle_.erase(it);
    }
    if (got.link == nullptr) return {};
    if (got.link->alive()) return {std::move(got.link), std::move(got.caller)};
  }
}

void LinkPool::expire() {
  std::vector<Idle> expired;  // closed outside the lock
  std::lock_guard lock(mu_);
  const std::int64_t now = now_ms();
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& v = it->second;
    for (auto i = v.begin(); i != v.end();) {
      if (now - i->since_ms > idle_ms_) {
        expired.push_back(std::move(*i));
        i = v.erase(i);
      } else {
        ++i;
      }
    }
    it = v.empty() ? idle_.erase(it) : std::next(it);
  }
}

void LinkPool::give_back(const std::string& key, std::string caller, std::unique_ptr<PgLink> link) {
  expire();
  if (link == nullptr || per_key_ == 0 || !link->alive()) return;
  std::unique_ptr<PgLink> dropped;
  std::lock_guard lock(mu_);
  auto& v = idle_[key];
  if (v.size() >= per_key_) {
    dropped = std::move(v.front().link);  // the least recently used goes
    v.erase(v.begin());
  }
  v.push_back(Idle{std::move(link), std::move(caller), now_ms()});
}

std::size_t LinkPool::idle() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [k, v] : idle_) n += v.size();
  return n;
}

SqlResult PgLink::run(const std::string& sql, const std::vector<std::optional<std::string>>& params,
                      std::size_t max_rows, std::size_t max_bytes, int timeout_ms) {
  SqlResult out;
  notices_.clear();
  kept_bytes_ = 0;
  const std::int64_t deadline = now_ms() + timeout_ms;
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  if (PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                        nullptr, nullptr, 0) == 0) {
    out.sqlstate = "08006";
    out.message = clipped(PQerrorMessage(conn_), kMaxMessageBytes);
    broken_ = true;
    return out;
  }
  PQsetSingleRowMode(conn_);
  drain(out, max_rows, max_bytes, deadline);
  if (out.timed_out) {
    // Cancel it (a held statement is withdrawn, a running one stopped) and wait a little for
    // the connection to settle; otherwise it is dropped.
    if (PGcancel* c = PQgetCancel(conn_)) {
      char err[256];
      PQcancel(c, err, sizeof err);
      PQfreeCancel(c);
    }
    // The cancel may arrive after the statement finished, and then hit whatever runs next on
    // this connection: it is never lent again (to another caller least of all).
    retire_ = true;
    // What comes next says what became of it: it may have finished (approved or done just
    // then), and then the call reports what it did rather than a cancel that did not happen.
    out.timed_out = false;
    drain(out, max_rows, max_bytes, now_ms() + 5000);
    if (out.timed_out) broken_ = true;
    if (!out.ok || broken_) {
      out.ok = false;
      out.sqlstate = "57014";
      out.message = "the statement did not finish within " + std::to_string(timeout_ms / 1000) +
                    " s (waiting for approval, or running); it was canceled";
    }
  }
  if (!broken_ && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    // Each call is a transaction of its own: BEGIN and the like are not for tools.
    SqlResult rb;
    if (PQsendQuery(conn_, "ROLLBACK") != 0) drain(rb, 0, 0, now_ms() + 5000);
    if (!rb.ok) broken_ = true;
    out.ok = false;
    out.sqlstate = "25000";
    out.message =
        "pgwarden MCP: a tool call runs one statement in a transaction of its own; transaction "
        "control (BEGIN, COMMIT, ...) is not allowed, and what the call did was rolled back";
  }
  out.notices = std::move(notices_);
  notices_.clear();
  return out;
}

}  // namespace pgwarden::core
