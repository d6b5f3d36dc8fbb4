// The recording half of Session: who connected (session start), every statement (Query, Parse,
// Bind, Execute), each outcome (command tag and rows, or SQLSTATE and message, with its
// duration), COPY volumes and how the session ended, appended to this core's RecordLog. A
// statement is never forwarded unrecorded: when recording fails it is refused (58030), and in
// strict mode it waits until its record is durable.
#include <sys/socket.h>

#include <cstring>

#include "core/address.h"
#include "core/log.h"
#include "core/record_log.h"
#include "core/session.h"
#include "core/worker.h"
#include "policy/role_guard.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
namespace rec = pgwarden::recorder;
using pr::Next;

namespace {

// Reads a NUL-terminated string at `p`, advancing it; empty view and p = end if unterminated.
std::string_view take_cstring(std::string_view& p) {
  const std::size_t nul = p.find('\0');
  if (nul == std::string_view::npos) {
    p = {};
    return {};
  }
  const std::string_view s = p.substr(0, nul);
  p.remove_prefix(nul + 1);
  return s;
}

bool take_u16(std::string_view& p, std::uint16_t& v) {
  if (p.size() < 2) return false;
  v = static_cast<std::uint16_t>((static_cast<unsigned char>(p[0]) << 8) |
                                 static_cast<unsigned char>(p[1]));
  p.remove_prefix(2);
  return true;
}

bool take_i32(std::string_view& p, std::int32_t& v) {
  if (p.size() < 4) return false;
  std::uint32_t u = 0;
  for (int i = 0; i < 4; ++i) u = (u << 8) | static_cast<unsigned char>(p[i]);
  v = static_cast<std::int32_t>(u);
  p.remove_prefix(4);
  return true;
}

// The row count at the end of a command tag ("SELECT 5", "INSERT 0 1", "UPDATE 3").
std::uint64_t tag_rows(std::string_view tag) {
  const std::size_t sp = tag.rfind(' ');
  if (sp == std::string_view::npos) return 0;
  std::uint64_t n = 0;
  for (const char c : tag.substr(sp + 1)) {
    if (c < '0' || c > '9') return 0;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

std::string_view body_of(pr::Bytes message) {
  return {reinterpret_cast<const char*>(message.data()) + 5, message.size() - 5};
}

}  // namespace

Next Session::on_statement(const pr::Fragment& f) {
  const bool in_place = f.first && f.last && f.offset == 0;
  const pr::Bytes whole = in_place ? f.bytes : fe_msg_.add(f, fe_.held_prefix());
  if (whole.empty()) return Next::Continue;  // more of this message to come
  const char type = static_cast<char>(whole[0]);
  if (guard_role_ && (type == pr::fe::kQuery || type == pr::fe::kParse)) {
    std::string_view text = body_of(whole);
    if (type == pr::fe::kParse) text.remove_prefix(std::min(text.size(), text.find('\0') + 1));
    text = text.substr(0, text.find('\0'));
    const std::string why = policy::role_change_reason(text);
    if (!why.empty()) {
      PGW_WARN("session: %s tried to leave the mapped role: %s", identity_.c_str(), why.c_str());
      if (rec_ != nullptr && rec_->accepting()) {
        rec::Payload& p = rec_->payload(session_id_);
        p.add(rec::Field::Statement, ++statement_seq_)
            .add_clipped(rec::Field::Text, masked_for_record(text))
            .add(rec::Field::Sqlstate, pr::sqlstate::kInsufficientPrivilege)
            .add(rec::Field::Reason, "changing the session role is not allowed (" + why + ")");
        rec_->append(rec::RecordType::Refused);
      }
      if (type == pr::fe::kQuery && replies_pending_ != 0) --replies_pending_;  // never sent
      fail_after_replies(pr::sqlstate::kInsufficientPrivilege,
                         "pgwarden: changing the session role is not allowed (" + why + ")");
      return Next::Stop;
    }
  }
  // The statement policy judges Query and Parse texts; a Bind of a refused named statement is
  // refused again (the statement keeps its decision).
  policy::Decision decision;
  bool judged = false;
  const policy::Policy* pol = w_.policy();
  std::string hazard;
  if (pol != nullptr && type == pr::fe::kFunctionCall) {
    // Fast-path calls name the function by OID only: they cannot be checked against the
    // dangerous function list, so a rule that denies calls or dangerous functions refuses them.
    const policy::Rule* r = current_rule(*pol);
    constexpr policy::ClassSet kCall = policy::bit(policy::StatementClass::Call) |
                                       policy::bit(policy::StatementClass::DangerousFunction);
    if (r != nullptr && (r->denied() & kCall) != 0) {
      hazard = "pgwarden: fast-path function calls are denied by policy rule \"" + r->name +
               "\" (the function is named by OID only, so it counts as a dangerous_function)";
    }
  } else if (pol != nullptr && (type == pr::fe::kQuery || type == pr::fe::kParse)) {
    hazard = lexing_hazard(whole);
  }
  if (!hazard.empty()) {
    const std::string& refusal = hazard;
    PGW_WARN("session %016llx: refused: %s", static_cast<unsigned long long>(session_id_),
             refusal.c_str());
    if (rec_ != nullptr && rec_->has_room()) {
      std::string_view p = body_of(whole);
      if (type == pr::fe::kParse) take_cstring(p);
      rec::Payload& r = rec_->payload(session_id_);
      r.add(rec::Field::Statement, ++statement_seq_)
          .add_clipped(rec::Field::Text, masked_for_record(take_cstring(p)))
          .add(rec::Field::Sqlstate, pr::sqlstate::kInsufficientPrivilege)
          .add(rec::Field::Reason, refusal)
          .add(rec::Field::Decision, "deny");
      rec_->append(rec::RecordType::Refused);
    }
    ++w_.mutable_stats().refused_policy;
    refuse_statement(type, refusal);
    return Next::Continue;
  }
  std::string_view hold_name;
  std::string_view held_text;
  if (pol != nullptr &&
      (type == pr::fe::kQuery || type == pr::fe::kParse || type == pr::fe::kBind)) {
    std::string_view p = body_of(whole);
    std::string refusal;
    std::string_view text;
    if (type == pr::fe::kBind) {
      take_cstring(p);  // the portal
      const std::string_view name = take_cstring(p);
      for (const auto& [n, message] : denied_statements_) {
        if (n == name) refusal = message;
      }
    } else {
      const std::string_view name = type == pr::fe::kParse ? take_cstring(p) : std::string_view();
      text = take_cstring(p);
      decision = w_.policy_engine().judge(*pol, current_rule(*pol), text);
      judged = true;
      if (decision.rule == nullptr && !catalog_query_.empty()) {
        decision.classes = w_.policy_engine().classes_of(*pol, text);
      }
      if (mask_ != nullptr && !mask_->columns.empty() && decision.action != policy::Action::Deny &&
          (decision.classes & policy::bit(policy::StatementClass::CopyTo)) != 0) {
        // Column rules cannot be applied to COPY's rows (they carry no column names).
        refusal = "pgwarden: COPY TO is not allowed while the column rules of masking profile \"" +
                  mask_->name + "\" apply; use SELECT";
        decision.action = policy::Action::Deny;
        if (!name.empty()) denied_statements_.emplace_back(name, refusal);
      } else if (decision.action == policy::Action::Hold && w_.approvals() != nullptr) {
        hold_name = name;  // held for a human (admin endpoint): decided below
      } else if (decision.action != policy::Action::Allow) {
        refusal = policy::refusal_message(decision);
        if (!name.empty()) denied_statements_.emplace_back(name, refusal);
      } else if (!name.empty()) {
        std::erase_if(denied_statements_, [&](const auto& d) { return d.first == name; });
      }
    }
    if (!refusal.empty()) {
      PGW_INFO("session %016llx: %s refused: %s", static_cast<unsigned long long>(session_id_),
               identity_.empty() ? start_user_.c_str() : identity_.c_str(), refusal.c_str());
      if (rec_ != nullptr && rec_->has_room()) {
        rec::Payload& r = rec_->payload(session_id_);
        r.add(rec::Field::Statement, ++statement_seq_)
            .add_clipped(rec::Field::Text, masked_for_record(text))
            .add(rec::Field::Sqlstate, pr::sqlstate::kInsufficientPrivilege)
            .add(rec::Field::Reason, refusal)
            .add(rec::Field::Decision,
                 judged && decision.action == policy::Action::Hold ? "hold" : "deny");
        if (judged) {
          r.add(rec::Field::Rule, decision.rule != nullptr ? decision.rule->name : "")
              .add(rec::Field::Classes, policy::class_names(decision.classes));
        }
        rec_->append(rec::RecordType::Refused);
      }
      ++w_.mutable_stats().refused_policy;
      refuse_statement(type, refusal);
      return Next::Continue;
    }
    held_text = text;
  }
  if (rec_ != nullptr) {
    if (!rec_->accepting()) {
      refuse_unrecorded(type);
      return closing_ || finishing_ || !deferred_error_.empty() ? Next::Stop : Next::Continue;
    }
    record_statement(type, whole, judged ? &decision : nullptr);
  }
  if (judged && decision.action == policy::Action::Hold) {
    begin_approval(type, whole.size(), hold_name, held_text, decision);
  }
  if (judged) catalog_changed(decision.classes);
  if (results_ != nullptr) results_->on_frontend(whole);
  forward_whole(Peer::Upstream, f, whole, fe_);
  return Next::Continue;
}

// Recording cannot be guaranteed: nothing goes upstream. A lone simple Query gets an ERROR and
// the session stays usable; anything else (a pipeline in flight) ends the session cleanly.
void Session::refuse_unrecorded(char type) {
  ++w_.mutable_stats().refused_recording;
  const std::string msg = "pgwarden: statement refused because it cannot be recorded (" +
                          rec_->failure() + "); try again when recording works again";
  PGW_WARN("session %016llx: refused a statement: recording is failing (%s)",
           static_cast<unsigned long long>(session_id_), rec_->failure().c_str());
  if (type == pr::fe::kQuery && replies_pending_ == 1 && !holding_) {
    answer_here(pr::sqlstate::kIoError, msg);
    return;
  }
  if (type == pr::fe::kQuery && replies_pending_ != 0) --replies_pending_;
  fail_after_replies(pr::sqlstate::kIoError, msg);
}

const policy::Rule* Session::current_rule(const policy::Policy& policy) {
  if (rule_policy_id_ != policy.id()) {
    static const std::vector<std::string> kNoGroups;
    const bool gateway = client_auth_ != nullptr && state_ >= SessionState::Connecting;
    const std::string_view who = gateway ? identity_ : start_user_;
    const std::vector<std::string>& groups = gateway ? client_auth_->caller().groups : kNoGroups;
    rule_ = policy.match(who, groups);
    rule_policy_id_ = policy.id();
    update_masking(policy, who, groups);
  }
  return rule_;
}

// Refused: a lone simple Query is answered here (ERROR, then ReadyForQuery with the unchanged
// transaction status) and nothing is sent upstream. Otherwise the message is replaced upstream by
// one that fails with a marker, so the server answers it in its place, skips the rest of the
// pipeline up to Sync and rolls back an implicit transaction, as if it had refused it itself.
void Session::refuse_statement(char type, const std::string& message) {
  const bool simple = type == pr::fe::kQuery || type == pr::fe::kFunctionCall;
  if (simple && replies_pending_ == 1 && !holding_ && denials_.empty()) {
    answer_here(pr::sqlstate::kInsufficientPrivilege, message);
    return;
  }
  const std::uint32_t id = ++denial_seq_;
  const std::string text = denial_marker(id);
  std::basic_string<std::byte> msg;
  if (simple) {
    pr::append_query(msg, text);
  } else {
    pr::append_parse(msg, "", text);  // the unnamed statement
  }
  denials_.push_back(Denial{id, replies_pending_ + (simple ? 0u : 1u), message});
  queue_copy(Peer::Upstream, msg);
}

// "pgwarden_refused_<session>_<id>": the text of a refused message's stand-in, which the server
// quotes in its syntax error; with id 0, the prefix only (what errors are searched for).
std::string Session::denial_marker(std::uint32_t id) const {
  char marker[64];
  const int n = std::snprintf(marker, sizeof marker, "pgwarden_refused_%016llx_",
                              static_cast<unsigned long long>(session_id_));
  std::string out(marker, static_cast<std::size_t>(n));
  if (id != 0) out += std::to_string(id);
  return out;
}

// The only reply still due is to the message being handled (a simple Query or FunctionCall):
// answer it here with an ERROR and ReadyForQuery carrying the unchanged transaction status.
void Session::answer_here(std::string_view sqlstate, const std::string& message) {
  --replies_pending_;
  std::basic_string<std::byte> out;
  pr::append_error(out, "ERROR", sqlstate, message);
  pr::append_ready_for_query(out, tx_status_);
  queue_copy(Peer::Client, out);
  waiting_for_client_ = true;
}

void Session::on_parameter_status(const pr::Fragment& f) {
  const pr::Bytes whole = backend_whole(f);
  if (whole.empty()) return;
  std::string_view p = body_of(whole);
  const std::string_view name = take_cstring(p);
  const std::string_view value = take_cstring(p);
  if (name == "standard_conforming_strings") standard_strings_off_ = value != "on";
  if (name == "client_encoding") {
    // Client-only encodings whose multibyte characters can contain ASCII bytes (a backslash).
    static constexpr std::string_view kUnsafe[] = {"SJIS", "SHIFT_JIS_2004", "BIG5", "GBK",
                                                   "UHC",  "GB18030",        "JOHAB"};
    unsafe_encoding_.clear();
    for (const std::string_view e : kUnsafe) {
      if (value == e) unsafe_encoding_ = value;
    }
  }
}

// Text the classifier cannot read as PostgreSQL will, or empty: a backslash while
// standard_conforming_strings is off (the server then reads it as an escape and may end a
// literal elsewhere), or a non-ASCII byte in a client encoding where a character can contain a
// backslash byte. Such statements are refused: fail closed.
std::string Session::lexing_hazard(pr::Bytes whole) const {
  if (standard_strings_off_ && std::memchr(whole.data(), '\\', whole.size()) != nullptr) {
    return "pgwarden: statements containing a backslash are refused while "
           "standard_conforming_strings is off (SET standard_conforming_strings = on)";
  }
  if (!unsafe_encoding_.empty()) {
    for (std::size_t i = 5; i < whole.size(); ++i) {
      if (static_cast<unsigned char>(whole[i]) >= 0x80) {
        return "pgwarden: statements with non-ASCII characters are refused while "
               "client_encoding is " +
               unsafe_encoding_ + " (use UTF8)";
      }
    }
  }
  return {};
}

// A whole ErrorResponse (masked already when masking applies).
Next Session::on_backend_error(const pr::Fragment& f, pr::Bytes whole) {
  if (!denials_.empty()) {
    const auto e = pr::read_error(whole);
    const std::string prefix = denial_marker(0);
    const std::size_t at = e ? e->message.find(prefix) : std::string::npos;
    if (at != std::string::npos) {
      const auto id = static_cast<std::uint32_t>(
          std::strtoul(e->message.c_str() + at + prefix.size(), nullptr, 10));
      for (auto it = denials_.begin(); it != denials_.end(); ++it) {
        if (it->id != id) continue;
        std::basic_string<std::byte> out;
        pr::append_error(out, "ERROR", pr::sqlstate::kInsufficientPrivilege, it->message);
        queue_copy(Peer::Client, out);
        denials_.erase(it);
        return Next::Continue;
      }
    }
  }
  if (rec_ != nullptr) record_outcome(pr::be::kErrorResponse, whole);
  forward_whole(Peer::Client, f, whole, be_);
  return Next::Continue;
}

bool Session::record_statement(char type, pr::Bytes message, const policy::Decision* decision) {
  std::string_view p = body_of(message);
  rec::Payload& out = rec_->payload(session_id_);
  const std::uint32_t seq = ++statement_seq_;
  out.add(rec::Field::Statement, seq);
  rec::RecordType rt = rec::RecordType::Query;
  switch (type) {
    case pr::fe::kQuery:
      out.add_clipped(rec::Field::Text, masked_for_record(take_cstring(p)));
      pending_statements_.push_back({w_.now_ns(), seq, 'Q'});
      break;
    case pr::fe::kParse: {
      const std::string_view name = take_cstring(p);
      out.add(rec::Field::Name, name)
          .add_clipped(rec::Field::Text, masked_for_record(take_cstring(p)));
      rt = rec::RecordType::Parse;
      break;
    }
    case pr::fe::kBind: {
      rt = rec::RecordType::Bind;
      const std::string_view portal = take_cstring(p);
      const std::string_view name = take_cstring(p);
      out.add(rec::Field::Portal, portal).add(rec::Field::Name, name);
      std::uint16_t nformats = 0, nparams = 0;
      if (!take_u16(p, nformats) || p.size() < 2u * nformats) break;
      const std::string_view formats = p.substr(0, 2u * nformats);
      p.remove_prefix(2u * nformats);
      if (!take_u16(p, nparams)) break;
      for (std::uint16_t i = 0; i < nparams; ++i) {
        std::int32_t len = 0;
        if (!take_i32(p, len)) break;
        if (len < 0) {
          out.add(rec::Field::ParamNull, "");
          continue;
        }
        if (static_cast<std::size_t>(len) > p.size()) break;
        const std::string_view value = p.substr(0, static_cast<std::size_t>(len));
        p.remove_prefix(static_cast<std::size_t>(len));
        const std::size_t fi = nformats == 1 ? 0 : i;
        const bool binary = nformats != 0 && fi < nformats && formats[2 * fi + 1] == 1;
        if (binary) {
          out.add_clipped(rec::Field::Param, "\\x" + rec::hex(masked_for_record(value)));
        } else {
          out.add_clipped(rec::Field::Param, masked_for_record(value));
        }
      }
      break;
    }
    case pr::fe::kFunctionCall: {
      std::int32_t oid = 0;
      take_i32(p, oid);
      out.add(rec::Field::Text, "(fast-path call of the function with OID " +
                                    std::to_string(static_cast<std::uint32_t>(oid)) + ")");
      pending_statements_.push_back({w_.now_ns(), seq, 'Q'});
      break;
    }
    case pr::fe::kExecute:
      rt = rec::RecordType::Execute;
      out.add(rec::Field::Portal, take_cstring(p));
      pending_statements_.push_back({w_.now_ns(), seq, 'E'});
      break;
    default:
      return false;
  }
  if (decision != nullptr) {
    out.add(rec::Field::Decision, decision->action == policy::Action::Hold ? "hold" : "allow")
        .add(rec::Field::Rule, decision->rule != nullptr ? decision->rule->name : "(no rule)")
        .add(rec::Field::Classes, policy::class_names(decision->classes));
  }
  const std::uint64_t end = rec_->append(rt);
  last_record_end_ = end;
  if (rec_->durability() == Durability::Strict) {
    rec_->wait_durable(*this, end);
    start_hold();
  }
  return true;
}

// Upstream-bound bytes wait in held_ (and client reads pause) until every reason to hold is gone.
void Session::start_hold() {
  if (holding_) return;
  holding_ = true;
  client_.held = true;
  if (client_.recv_armed) w_.cancel_recv(*this, Peer::Client);
}

void Session::on_record_durable() {
  release_hold();
}

void Session::release_hold() {
  if (!holding_ || waiting_approval_) return;
  if (rec_ != nullptr && rec_->durability() == Durability::Strict &&
      rec_->synced() < last_record_end_) {
    rec_->wait_durable(*this, last_record_end_);
    return;
  }
  holding_ = false;
  client_.held = false;
  if (closing_ || finishing_) return;
  if (!held_.empty()) {
    queue_copy(Peer::Upstream, held_);
    held_.clear();
    check_backpressure(Peer::Upstream);
  }
  w_.arm_recv(*this, Peer::Client);
}

// require_approval with the admin endpoint on: the statement waits (with everything the client
// sends after it) until someone approves or denies it, or --approval-timeout passes.
void Session::begin_approval(char type, std::size_t size, std::string_view name,
                             std::string_view text, const policy::Decision& d) {
  const std::string rule = d.rule != nullptr ? d.rule->name : "";
  Approvals::Pending p;
  p.core = w_.index();
  p.session = session_id_;
  p.identity = identity_.empty() ? start_user_ : identity_;
  p.statement = text;
  p.rule = rule;
  p.reason = d.reason;
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  p.requested_at_us = std::int64_t(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
  approval_id_ = w_.approvals()->request(std::move(p));
  waiting_approval_ = true;
  approval_type_ = type;
  approval_name_ = name;
  approval_seq_ = statement_seq_;
  approval_since_ns_ = w_.now_ns();
  approval_message_ =
      "pgwarden: statement held for approval under policy rule \"" + rule + "\" (" + d.reason + ")";
  start_hold();
  approval_offset_ = held_.size();  // the statement is forwarded into held_ right after this
  approval_len_ = size;
  PGW_WARN(
      "approval %llu requested: %s wants to run [%.*s] (rule %s, %s); decide with POST "
      "/approvals/%llu/approve or /deny on the admin endpoint",
      static_cast<unsigned long long>(approval_id_),
      identity_.empty() ? start_user_.c_str() : identity_.c_str(),
      static_cast<int>(std::min<std::size_t>(text.size(), 200)), text.data(), rule.c_str(),
      d.reason.c_str(), static_cast<unsigned long long>(approval_id_));
}

void Session::on_approval(const ApprovalDecision& d) {
  if (!waiting_approval_ || d.id != approval_id_) return;
  finish_approval(d.approved, (d.approved ? "approved by " : "denied by ") +
                                  (d.approver.empty() ? std::string("an approver") : d.approver));
}

void Session::finish_approval(bool approved, const std::string& outcome) {
  waiting_approval_ = false;
  PGW_INFO("approval %llu: %s", static_cast<unsigned long long>(approval_id_), outcome.c_str());
  if (rec_ != nullptr && rec_->has_room()) {
    rec::Payload& r = rec_->payload(session_id_);
    r.add(rec::Field::Statement, approval_seq_)
        .add(rec::Field::Decision, approved ? "approved" : "denied")
        .add(rec::Field::Reason, outcome)
        .add(rec::Field::DurationUs,
             static_cast<std::uint64_t>((w_.now_ns() - approval_since_ns_) / 1000));
    rec_->append(rec::RecordType::Approval);
  }
  if (!approved && approval_offset_ + approval_len_ <= held_.size()) {
    // The held statement is replaced by its refusal; what the client sent after it stays queued.
    const std::basic_string<std::byte> rest = held_.substr(approval_offset_ + approval_len_);
    held_.resize(approval_offset_);
    const std::string message = approval_message_ + " was " + outcome;
    if (!approval_name_.empty()) denied_statements_.emplace_back(approval_name_, message);
    ++w_.mutable_stats().refused_policy;
    refuse_statement(approval_type_, message);  // appended to held_: we are still holding
    held_.append(rest);
  }
  release_hold();
}

void Session::withdraw_approval() {
  if (!waiting_approval_) return;
  waiting_approval_ = false;
  w_.approvals()->withdraw(approval_id_);
}

void Session::check_approval_timeout(std::int64_t now_ns) {
  if (!waiting_approval_) return;
  const auto limit = static_cast<std::int64_t>(w_.config().approval_timeout_s * 1e9);
  if (now_ns - approval_since_ns_ <= limit) return;
  if (!w_.approvals()->withdraw(approval_id_)) return;  // decided meanwhile: the mailbox has it
  char outcome[96];
  std::snprintf(outcome, sizeof outcome, "not decided within %g s", w_.config().approval_timeout_s);
  finish_approval(false, outcome);
}

void Session::record_start() {
  recorded_start_ = true;
  std::string client = "?";
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(client_.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    client = format_address(reinterpret_cast<sockaddr*>(&ss), len);
  }
  rec::Payload& p = rec_->payload(session_id_);
  const bool gateway = client_auth_ != nullptr;
  p.add(rec::Field::Identity, gateway && !identity_.empty() ? identity_ : start_user_);
  if (gateway && state_ >= SessionState::Connecting) {
    for (const std::string& g : client_auth_->caller().groups) p.add(rec::Field::Groups, g);
    p.add(rec::Field::Method, client_auth_->caller().method);
  } else {
    p.add(rec::Field::Method, gateway ? "gateway (not authenticated)" : "relayed to upstream");
  }
  p.add(rec::Field::Client, client)
      .add(rec::Field::Application, start_app_)
      .add(rec::Field::Database, database_.empty() ? start_database_ : database_)
      .add(rec::Field::Role, gateway || !role_.empty() ? role_ : start_user_)
      .add(rec::Field::Tls, client_.tls ? client_.tls->describe() : std::string("none"))
      .add(rec::Field::Masking, mask_ != nullptr        ? mask_->name
                                : !mask_exempt_.empty() ? "exempt (" + mask_exempt_ + ")"
                                                        : std::string("none"));
  rec_->append(rec::RecordType::SessionStart);
}

void Session::record_end() {
  if (rec_ == nullptr || recorded_end_) return;
  rec_->forget(*this);
  // A login that never completed is recorded too (a failed authentication is evidence).
  if (!recorded_start_) {
    if (state_ < SessionState::ClientAuth || !rec_->has_room()) return;
    record_start();
  }
  recorded_end_ = true;
  if (!rec_->has_room()) return;
  rec::Payload& p = rec_->payload(session_id_);
  p.add(rec::Field::Reason, end_reason_.empty() ? std::string("connection closed") : end_reason_);
  rec_->append(rec::RecordType::SessionEnd);
}

// One DataRow as the client receives it: each column's bytes (text, or binary if the client asked
// for binary results), NULL as a null marker.
void Session::record_row(pr::Bytes whole) {
  ++rows_recorded_;
  if (!rec_->has_room()) return;
  std::string_view p = body_of(whole);
  rec::Payload& out = rec_->payload(session_id_);
  out.add(rec::Field::Statement, pending_statements_.empty() ? 0 : pending_statements_.front().seq);
  std::uint16_t ncols = 0;
  take_u16(p, ncols);
  for (std::uint16_t i = 0; i < ncols; ++i) {
    std::int32_t len = 0;
    if (!take_i32(p, len)) break;
    if (len < 0) {
      out.add(rec::Field::ValueNull, "");
      continue;
    }
    if (static_cast<std::size_t>(len) > p.size()) break;
    out.add_clipped(rec::Field::Value, p.substr(0, static_cast<std::size_t>(len)));
    p.remove_prefix(static_cast<std::size_t>(len));
  }
  rec_->append(rec::RecordType::Row);
}

void Session::record_backend(const pr::Fragment& f) {
  switch (f.type) {
    case pr::be::kCopyData:
      copy_out_bytes_ += f.bytes.size() - (f.first ? 5 - f.offset : 0);
      return;
    case pr::be::kDataRow:
      if (rows_recorded_ < w_.config().record_rows) {
        const pr::Bytes whole = backend_whole(f);
        if (!whole.empty()) record_row(whole);
      }
      return;
    case pr::be::kReadyForQuery:
      if (!f.last || f.bytes.empty()) return;
      while (!pending_statements_.empty()) {
        const char kind = pending_statements_.front().kind;
        pending_statements_.pop_front();
        if (kind == 'S' || kind == 'Q') break;
      }
      return;
    case pr::be::kCommandComplete:
    case pr::be::kEmptyQueryResponse:
    case pr::be::kPortalSuspended:
      break;
    default:
      return;  // errors: on_backend_error
  }
  const pr::Bytes whole = backend_whole(f);
  if (!whole.empty()) record_outcome(f.type, whole);
}

// The outcome of the statement the server just answered (command tag, or error), with its
// duration and COPY volume.
void Session::record_outcome(char type, pr::Bytes whole) {
  PendingStatement st{w_.now_ns(), 0, 0};
  if (!pending_statements_.empty() && pending_statements_.front().kind != 'S') {
    st = pending_statements_.front();
  }
  rec::Payload& p = rec_->payload(session_id_);
  p.add(rec::Field::Statement, st.seq);
  if (type == pr::be::kErrorResponse) {
    const auto e = pr::read_error(whole);
    p.add(rec::Field::Sqlstate, e ? e->sqlstate : std::string("?"))
        .add_clipped(rec::Field::Message, e ? e->message : std::string("(unreadable)"));
  } else if (type == pr::be::kCommandComplete) {
    std::string_view tag = body_of(whole);
    tag = tag.substr(0, tag.find('\0'));
    p.add(rec::Field::Tag, tag).add(rec::Field::Rows, tag_rows(tag));
  } else {
    p.add(rec::Field::Tag,
          type == pr::be::kPortalSuspended ? "(portal suspended)" : "(empty query)");
  }
  p.add(rec::Field::DurationUs, static_cast<std::uint64_t>((w_.now_ns() - st.start_ns) / 1000));
  if (copy_in_bytes_ != 0) {
    p.add(rec::Field::Direction, "in").add(rec::Field::Bytes, copy_in_bytes_);
  } else if (copy_out_bytes_ != 0) {
    p.add(rec::Field::Direction, "out").add(rec::Field::Bytes, copy_out_bytes_);
  }
  copy_in_bytes_ = copy_out_bytes_ = 0;
  rows_recorded_ = 0;
  if (rec_->has_room()) rec_->append(rec::RecordType::Outcome);
  // Each Execute gets one outcome; a simple Query's statements all belong to it until 'Z'. After
  // an error the server skips the rest of the pipeline up to Sync.
  if (!pending_statements_.empty() && pending_statements_.front().kind == 'E') {
    pending_statements_.pop_front();
    if (type == pr::be::kErrorResponse) {
      while (!pending_statements_.empty() && pending_statements_.front().kind == 'E') {
        pending_statements_.pop_front();
      }
    }
  }
}

}  // namespace pgwarden::core
