// What the admin API sees of a session and how it ends one: answered on the session's core
// (Worker::answer), from the session's own state.
#include <sys/socket.h>

#include "core/address.h"
#include "core/log.h"
#include "core/session.h"
#include "core/worker.h"
#include "protocol/json.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;

namespace {

const char* state_name(SessionState s, bool held, const pr::PipelineModel& model) {
  if (held) return "waiting for approval";
  switch (s) {
    case SessionState::Ready:
      break;
    case SessionState::Replicating:
      return "replicating";
    default:
      return "starting";
  }
  if (!model.settled()) return "active";
  return model.tx_status() == 'T'   ? "idle in transaction"
         : model.tx_status() == 'E' ? "idle in failed transaction"
                                    : "idle";
}

}  // namespace

void Session::describe(std::string& out, std::int64_t now_ns) {
  const Caller& c = caller();
  char id[20];
  std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(session_id_));
  std::string client = "?";
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (client_.fd >= 0 && ::getpeername(client_.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    client = format_address(reinterpret_cast<sockaddr*>(&ss), len);
  }
  out += "{\"id\":\"" + std::string(id) + "\",\"core\":" + std::to_string(w_.index()) +
         ",\"identity\":";
  pr::append_json_string(out, c.identity);
  out += ",\"actors\":";
  pr::append_json_strings(out, c.actors);
  out += ",\"groups\":[";
  for (std::size_t i = 0; i < c.groups.size(); ++i) {
    if (i > 0) out += ",";
    pr::append_json_string(out, c.groups[i]);
  }
  out += "],\"method\":";
  pr::append_json_string(out, c.method);
  out += ",\"client\":";
  pr::append_json_string(out, client);
  out += ",\"tls\":";
  out += client_.tls ? "true" : "false";
  out += ",\"database\":";
  pr::append_json_string(out, c.upstream_database.empty() ? c.database : c.upstream_database);
  out += ",\"role\":";
  pr::append_json_string(out, c.role);
  out += ",\"application\":";
  pr::append_json_string(out, c.application);
  out += ",\"age_s\":" + std::to_string((now_ns - started_ns_) / 1'000'000'000) +
         ",\"idle_s\":" + std::to_string((now_ns - last_activity_ns_) / 1'000'000'000) +
         ",\"state\":\"" + state_name(state_, approvals_.waiting(), model_) + "\"";
  // The last statement, masked as the recording keeps it.
  out += ",\"statement\":";
  pr::append_json_string(out, state_ == SessionState::Ready
                                  ? std::string(masking_.for_record(last_statement_))
                                  : std::string());
  out += ",\"waiting_approval\":";
  out += approvals_.waiting() ? "true" : "false";
  out += "}";
}

void Session::end_by_admin(const std::string& message) {
  ended_by_admin_ = true;
  PGW_WARN("session %016llx (%s): %s", static_cast<unsigned long long>(session_id_),
           caller().identity.c_str(), message.c_str());
  // A statement running upstream is canceled (its transaction rolls back) rather than left to
  // finish behind the Terminate.
  if (state_ == SessionState::Ready && !model_.settled() && gateway_key_.pid != 0) {
    w_.cancel_upstream(gateway_key_);
  }
  fail(pr::sqlstate::kAdminShutdown, message);
}

}  // namespace pgwarden::core
