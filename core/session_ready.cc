// The Session's ready phase: every frontend message is read whole (COPY data aside), checked,
// run through the frontend stages and committed to the pipeline model as it goes upstream; every
// backend message is fed to the model, run through the backend stages and delivered. Refusals are
// answered in their place of the stream: a refused Query or FunctionCall by pgwarden itself when
// its turn comes, an extended-protocol message by a stand-in that fails upstream, so the server
// skips the rest of the pipeline as if it had refused the message itself.
#include "core/log.h"
#include "core/session.h"
#include "core/worker.h"
#include "policy/internal_login.h"
#include "policy/token_setting.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
using pr::Next;

inline void Session::refresh_chains() noexcept {
  const policy::Policy* pol = w_.services().policy;
  if ((pol != nullptr ? pol->id() : 0) != chains_for_) build_chains();
}

Next Session::on_ready_frontend(const pr::Fragment& f) {
  if (f.first) {
    if (auth_.token_expired()) {
      PGW_INFO("session: token of %s expired; ending the session", caller().identity.c_str());
      fail(pr::sqlstate::kInvalidAuthorization, "token expired");
      return Next::Stop;
    }
    if (f.type == pr::fe::kCopyData) {
      if (model_.copy_in() && recording_) recording_->on_copy_in(f.size - 5);
    } else if (f.size > w_.config().max_statement_size) {
      // Messages pgwarden must read whole are bounded before a byte of them is buffered.
      fail_after_replies(pr::sqlstate::kProgramLimitExceeded,
                         "pgwarden: a message of " + std::to_string(f.size) +
                             " bytes is larger than pgwarden reads whole (--max-statement-size " +
                             std::to_string(w_.config().max_statement_size) + ")");
      return Next::Stop;
    }
  }
  if (f.type == pr::fe::kCopyData) {
    // COPY data streams through; in COPY or not, it answers nothing.
    forward(Peer::Upstream, f, fe_);
    return Next::Continue;
  }
  const bool in_place = f.first && f.last && f.offset == 0;
  const pr::Bytes whole = in_place ? f.bytes : fe_msg_.add(f, fe_.held_prefix());
  if (whole.empty()) return Next::Continue;
  const Next next = on_frontend_message(f, whole);
  if (!in_place) fe_msg_.shrink();
  if (masking_engaged_) masking_.trim();  // (the recording's masked text of it is taken)
  return next;
}

Next Session::on_frontend_message(const pr::Fragment& f, pr::Bytes whole) {
  const std::byte* rest = f.bytes.data() + f.bytes.size();
  pr::FrontendView v;
  std::string why;
  if (!pr::read_frontend(whole, v, why)) {
    ++w_.mutable_stats().protocol_errors;
    PGW_INFO("session %016llx: malformed message from the client: %s",
             static_cast<unsigned long long>(session_id_), why.c_str());
    fail_after_replies(pr::sqlstate::kProtocolViolation, why);
    return Next::Stop;
  }
  switch (model_.fate(v)) {
    case pr::PipelineModel::Fate::Terminate:
      // Nothing after Terminate is read.
      end_reason_ = "client ended the session (Terminate)";
      forward_whole(Peer::Upstream, f, whole, fe_);
      model_.commit(v);
      client_.eof = true;
      if (client_.recv_armed) w_.cancel_recv(*this, Peer::Client);
      return Next::Stop;
    case pr::PipelineModel::Fate::Violation: {
      ++w_.mutable_stats().protocol_errors;
      char msg[96];
      std::snprintf(msg, sizeof msg, "unexpected message type 0x%02X during COPY from stdin",
                    static_cast<unsigned>(static_cast<unsigned char>(v.type)));
      fail_after_replies(pr::sqlstate::kProtocolViolation, msg);
      return Next::Stop;
    }
    case pr::PipelineModel::Fate::Ignored:
    case pr::PipelineModel::Fate::CopyData:
    case pr::PipelineModel::Fate::CopyEnd:
      forward_whole(Peer::Upstream, f, whole, fe_);
      model_.commit(v);
      return model_.input_barrier() ? pause_input(Pause::Barrier, {}, rest) : Next::Continue;
    case pr::PipelineModel::Fate::Request:
      break;
  }
  if (model_.full()) return pause_input(Pause::Full, whole, rest);
  if (v.query) {
    // Before any stage sees it: a text naming pgwarden.token is never judged, recorded, kept
    // as the last statement or forwarded.
    std::string_view token;
    const policy::TokenSetting setting = policy::token_setting(v.text, token);
    if (setting != policy::TokenSetting::None) {
      if (masking_engaged_ && masking_.holds_input())
        return pause_input(Pause::Settled, whole, rest);
      if (setting == policy::TokenSetting::Refresh && auth_.internal() &&
          token.starts_with(policy::InternalLogins::kHandoverPrefix)) {
        hand_over(v, token);
      } else {
        on_token_setting(v, setting == policy::TokenSetting::Refresh ? token : std::string_view());
      }
      retire();
      if (closing_ || finishing_) return Next::Stop;
      return model_.input_barrier() ? pause_input(Pause::Barrier, {}, rest) : Next::Continue;
    }
  }
  refresh_chains();
  if (v.query || v.type == pr::fe::kFunctionCall) ++w_.mutable_stats().statements;
  if (v.query) last_statement_.assign(v.text.substr(0, 512));
  FrontendMessage m{v};
  // The stages that gate input are read through their concrete types (no virtual call); a
  // stage outside the chains gates nothing.
  if (front_gated_.every != 0) {  // (a bare relay has no stage to call)
    const bool gated = (masking_engaged_ && masking_.gates_input()) || policy_.gates_input();
    (gated ? front_gated_ : front_).each(v.type, false, [&m](Stage* s) { s->on_frontend(m); });
  }
  pr::Request* r = nullptr;
  switch (m.verdict) {
    case Verdict::Defer:
      return pause_input(Pause::Settled, whole, rest);
    case Verdict::Fail:
      fail_after_replies(m.sqlstate, m.message);
      return Next::Stop;
    case Verdict::Hold:
      if (m.decision != nullptr) count_decision(m);
      held_msg_.assign(whole.data(), whole.size());
      done_.each(v.type, false, [&m](Stage* s) { s->on_frontend_done(m, nullptr); });
      return pause_input(Pause::Held, {}, rest);
    case Verdict::Refuse:
      r = refuse(v, m.sqlstate, m.message);
      break;
    case Verdict::Replace:
      queue_copy(Peer::Upstream, m.replacement);
      r = model_.commit(v);
      note_sent(r);
      break;
    case Verdict::Drop:
      break;
    case Verdict::Forward:
      if (pooled_ && pooler_.rewrite(v)) {
        queue_copy(Peer::Upstream, pooler_.out());
        r = model_.commit(v, pr::Origin::Client, 0, pooler_.prelude());
      } else {
        forward_whole(Peer::Upstream, f, whole, fe_);
        r = model_.commit(v);
      }
      note_sent(r);
      break;
  }
  if (m.decision != nullptr) count_decision(m);
  done_.each(v.type, false, [&m, r](Stage* s) { s->on_frontend_done(m, r); });
  retire();
  if (closing_ || finishing_) return Next::Stop;
  if (!model_.input_barrier()) return Next::Continue;
  if (r != nullptr && r->kind == pr::RequestKind::Execute) flush_upstream();
  return pause_input(Pause::Barrier, {}, rest);
}

// Input waits for the replies of an Execute that may start COPY FROM STDIN: the server holds
// an Execute's replies until Sync or Flush unless it does start a COPY, so pgwarden asks it to
// send them (a Flush has no reply and no other effect; an error is sent at once anyway).
void Session::flush_upstream() {
  static constexpr std::byte kFlush[5] = {std::byte{'H'}, std::byte{0}, std::byte{0}, std::byte{0},
                                          std::byte{4}};
  queue_copy(Peer::Upstream, kFlush);
}

// A refused message, answered in its place of the stream: a Query or FunctionCall by pgwarden
// when its turn comes (ERROR and ReadyForQuery with the transaction status unchanged), anything
// else by a stand-in upstream that fails (a Parse of text that is not SQL, or an Execute of a
// portal nobody can have created), so that the server skips to Sync and rolls back what the
// pipeline did, as for its own errors.
pr::Request* Session::refuse(const pr::FrontendView& v, std::string_view sqlstate,
                             const std::string& message) {
  PGW_INFO("session %016llx: %s refused: %s", static_cast<unsigned long long>(session_id_),
           caller().identity.c_str(), message.c_str());
  if (sqlstate == pr::sqlstate::kInsufficientPrivilege) ++w_.mutable_stats().refused_policy;
  std::string tag(sqlstate.substr(0, 5));
  tag.resize(5, '0');
  tag += message;
  if (v.type == pr::fe::kQuery || v.type == pr::fe::kFunctionCall) {
    pr::Request& r = model_.commit_local(v.type == pr::fe::kQuery ? pr::RequestKind::Query
                                                                  : pr::RequestKind::FunctionCall);
    r.tag_text = std::move(tag);
    return &r;
  }
  // A refused Parse fails as PostgreSQL fails a Parse (the unnamed statement is dropped, a name
  // is not created); anything else is an Execute of a portal nobody can have created.
  std::basic_string<std::byte> standin;
  if (v.type == pr::fe::kParse) {
    pr::append_parse(standin, v.name, standin_portal_);
  } else {
    pr::append_execute(standin, standin_portal_, 0);
  }
  pr::FrontendView sv;
  std::string why;
  (void)pr::read_frontend(standin, sv, why);
  queue_copy(Peer::Upstream, standin);
  pr::Request* r = model_.commit(sv, pr::Origin::StandIn);
  r->tag_text = std::move(tag);
  return r;
}

pr::Request* Session::send_own(pr::Bytes message, std::uint8_t owner) {
  pr::FrontendView v;
  std::string why;
  if (!pr::read_frontend(message, v, why)) {
    PGW_ERROR("session: pgwarden built a malformed message: %s", why.c_str());
    return nullptr;
  }
  queue_copy(Peer::Upstream, message);
  return model_.commit(v, pr::Origin::Gateway, owner);
}

// SET pgwarden.token = '<token>' (a simple Query of its own): a fresh token for this session,
// answered by pgwarden (SET, in its place of the stream). Any other text naming the setting, and
// the same in a Parse, is refused. The recording says a token was refreshed or refused, and why,
// never the token.
void Session::on_token_setting(const pr::FrontendView& v, std::string_view token) {
  std::string note;
  if (token.empty() || v.type != pr::fe::kQuery) {
    note =
        "refused: a statement naming pgwarden.token other than a simple Query "
        "SET pgwarden.token = '<token>' of its own (its text is not recorded)";
    refuse(v, pr::sqlstate::kFeatureNotSupported,
           "pgwarden: pgwarden.token is taken only as a simple Query of its own: "
           "SET pgwarden.token = '<token>'");
  } else {
    const AuthStage::Refresh r = auth_.refresh_token(token);
    switch (r.kind) {
      case AuthStage::Refresh::Taken:
        note = "refreshed; the session's token now expires at " +
               std::to_string(auth_.token_expires_at()) + " (seconds since the epoch)";
        model_.commit_local(pr::RequestKind::Query).tag_text = std::string(kLocalSuccess) + "SET";
        break;
      case AuthStage::Refresh::Refused:
        note = "refused: " + r.message;
        refuse(v, pr::sqlstate::kInvalidAuthorization, r.message);
        break;
      case AuthStage::Refresh::EndSession:
        note = "ended the session: " + r.message;
        fail_after_replies(pr::sqlstate::kInvalidAuthorization, r.message);
        break;
    }
  }
  if (recording_) recording_->record_token(note);
}

void Session::answer_locally(pr::Request& r) {
  refusal_out_.clear();
  const std::string_view tag = r.tag_text;
  if (tag.substr(0, kLocalSuccess.size()) == kLocalSuccess) {
    pr::append_command_complete(refusal_out_, tag.substr(kLocalSuccess.size()));
    pr::append_ready_for_query(refusal_out_, model_.tx_status());
    queue_copy(Peer::Client, refusal_out_);
    return;
  }
  pr::append_error(refusal_out_, "ERROR", tag.substr(0, 5), tag.size() > 5 ? tag.substr(5) : "");
  pr::append_ready_for_query(refusal_out_, model_.tx_status());
  queue_copy(Peer::Client, refusal_out_);
}

void Session::retire() {
  if (!model_.retire_due()) return;
  refresh_chains();
  model_.retire(
      [this](const pr::Request& r) {
        retired_.each(r.kind, false, [&r](Stage* s) { s->on_retired(r); });
      },
      [this](pr::Request& r) { answer_locally(r); });
}

bool Session::backend_read_whole(char type) {
  switch (type) {
    case pr::be::kDataRow:
      // (pgwarden's own queries' rows are read whole too: the policy's search_path check.)
      return record_rows_ || (masking_engaged_ && masking_.reads_data()) ||
             model_.own_in_flight() != 0;
    case pr::be::kNoticeResponse:
      // (Read whole while pgwarden's own requests are in flight: their notices are dropped.)
      return (masking_engaged_ && masking_.reads_data()) || model_.own_in_flight() != 0;
    case pr::be::kCopyData:
    case pr::be::kNotificationResponse:
    case pr::be::kFunctionCallResponse:
      return masking_engaged_ && masking_.reads_data();
    default:
      return true;
  }
}

Next Session::on_ready_backend(const pr::Fragment& f) {
  refresh_chains();
  // Decided on a message's first fragment, for all of it (a reload between its fragments
  // applies from the next message).
  if (f.first) be_read_whole_ = backend_read_whole(static_cast<char>(f.type));
  const bool read_whole = be_read_whole_;
  if (!read_whole && !f.first) {
    forward(Peer::Client, f, be_);  // the rest of a message nobody inspects
    return Next::Continue;
  }
  pr::Bytes whole;
  if (read_whole) {
    if (f.first && f.size > w_.config().max_statement_size) {
      fail(pr::sqlstate::kProgramLimitExceeded,
           "pgwarden: a message of " + std::to_string(f.size) +
               " bytes from the server is larger than pgwarden reads whole to mask or record it "
               "(--max-statement-size)");
      return Next::Stop;
    }
    whole = backend_whole(f);
    if (whole.empty()) return Next::Continue;
  }
  const auto ev = model_.on_backend(static_cast<char>(f.type), whole);
  if (ev.divergence != nullptr) {
    diverged(static_cast<char>(f.type), ev.divergence);
    return Next::Stop;
  }
  const pr::Request* answering =
      f.type == pr::be::kNoticeResponse && read_whole ? model_.answering() : nullptr;
  if (ev.prelude || (answering != nullptr && answering->origin == pr::Origin::Gateway)) {
    // The ParseComplete of the pooler stage's Parse before a Bind or Describe, or a notice
    // raised while the server ran one of pgwarden's own requests (client_min_messages and the
    // debug_print_* settings are the client's to set): not the client's.
    if (!whole.empty() && whole.data() != f.bytes.data()) be_msg_.shrink();
    return Next::Continue;
  }
  if (ev.completes && ev.request != nullptr && ev.request->sent_ns != 0)
    note_completed(*ev.request);
  BackendMessage m;
  m.type = static_cast<char>(f.type);
  m.whole = whole;
  m.size = f.size;
  m.event = &ev;
  if (ev.request != nullptr && ev.request->origin == pr::Origin::Gateway &&
      ev.request->owner == kOwnerSession) {
    if (on_reset_reply(m) == Next::Stop) return Next::Stop;
    if (m.type != pr::be::kParameterStatus) m.verdict = Verdict::Drop;
  } else if (ev.request != nullptr && ev.request->origin == pr::Origin::StandIn &&
             m.type == pr::be::kErrorResponse) {
    // The stand-in of a refused message failed, as meant: the client gets the refusal.
    const std::string_view tag = ev.request->tag_text;
    refusal_out_.clear();
    pr::append_error(refusal_out_, "ERROR", tag.substr(0, 5), tag.substr(5));
    m.verdict = Verdict::Replace;
    m.out = refusal_out_;
  }
  if (m.verdict != Verdict::Drop) {
    // Replies to pgwarden's own requests reach every stage: the one that sent it drops them.
    const bool own = ev.request != nullptr && ev.request->origin == pr::Origin::Gateway;
    back_.each(m.type, own, [&m](Stage* s) { s->on_backend(m); });
  }
  switch (m.verdict) {
    case Verdict::Replace:
      queue_copy(Peer::Client, m.out);
      break;
    case Verdict::Drop:
      break;
    case Verdict::Fail:
      fail(m.sqlstate, m.message);
      return Next::Stop;
    default:
      if (read_whole) {
        forward_whole(Peer::Client, f, whole, be_);
      } else {
        forward(Peer::Client, f, be_);
      }
      break;
  }
  if (!whole.empty() && whole.data() != f.bytes.data()) be_msg_.shrink();
  if (masking_engaged_) masking_.trim();  // what it delivered is queued by now
  if (ev.fatal && end_reason_.empty()) {
    const auto e = pr::read_error(whole);
    end_reason_ = e ? e->sqlstate + " " + e->message : "the server ended the session";
  }
  retire();
  waiting_for_client_ = model_.settled();
  if (!deferred_error_.empty() && model_.settled()) {
    fail(deferred_sqlstate_, deferred_error_);
    return Next::Stop;
  }
  return Next::Continue;
}

// The model did not predict a reply: whatever pgwarden believes about this session (which rows
// a description covers, which statement an outcome belongs to) may be wrong. Fail closed.
void Session::diverged(char type, const char* why) {
  ++w_.mutable_stats().model_divergences;
  PGW_ERROR("session %016llx: the pipeline model lost track of the protocol: %s (message 0x%02x)",
            static_cast<unsigned long long>(session_id_), why,
            static_cast<unsigned>(static_cast<unsigned char>(type)));
  fail(pr::sqlstate::kInternalError, std::string("pgwarden: cannot follow the protocol here (") +
                                         why +
                                         "); the session ends so that nothing passes unchecked");
}

// Input waits: `keep` (the message being handled, when it is to be handled again) and what
// followed it in this chunk are kept unprocessed until maybe_resume() finds the reason gone.
Next Session::pause_input(Pause why, pr::Bytes keep, const std::byte* rest) {
  pause_ = why;
  pending_in_.assign(keep.data(), keep.size());
  if (rest != nullptr && rest < chunk_end_) pending_in_.append(rest, chunk_end_);
  set_client_held();
  return Next::Stop;
}

bool Session::pause_over() const {
  switch (pause_) {
    case Pause::None:
      return true;
    case Pause::Barrier:
      return !model_.input_barrier();
    case Pause::Settled:
      return model_.settled();
    case Pause::Held:
      return false;
    case Pause::Full:
      return model_.in_flight() * 2 <= pr::PipelineModel::Limits{}.max_requests;
  }
  return false;
}

void Session::maybe_resume() {
  if (pause_ == Pause::None || !pause_over() || closing_ || finishing_) return;
  pause_ = Pause::None;
  resume_buf_.swap(pending_in_);
  pending_in_.clear();
  if (!resume_buf_.empty()) {
    const bool copy = copy_fragments_;
    copy_fragments_ = true;  // these bytes are ours, not a receive buffer's
    feed_frontend(resume_buf_);
    copy_fragments_ = copy;
  }
  resume_buf_.clear();
  if (resume_buf_.capacity() > kShrinkAbove) decltype(resume_buf_)().swap(resume_buf_);
  if (!closing_ && !finishing_) {
    set_client_held();
    check_backpressure(Peer::Upstream);
  }
}

void Session::decide_held(bool approved, std::string_view sqlstate, std::string message,
                          std::string outcome) {
  if (held_msg_.empty() || closing_ || finishing_) return;
  std::basic_string<std::byte> msg;
  msg.swap(held_msg_);
  pr::FrontendView v;
  std::string why;
  if (!pr::read_frontend(msg, v, why)) return;
  FrontendMessage m{v};
  m.reason = std::move(outcome);
  if (approved) {
    for (Stage* s : all_) {
      s->on_held_approved(m);
      if (m.verdict == Verdict::Refuse) break;
    }
    if (m.verdict == Verdict::Refuse) {
      approved = false;
      sqlstate = m.sqlstate;
      message = m.message;
      m.reason = message;
    }
  }
  pr::Request* r = nullptr;
  const bool rewritten = approved && pooled_ && pooler_.rewrite(v);
  if (approved) {
    r = model_.commit(v, pr::Origin::Client, 0, rewritten && pooler_.prelude());
  } else {
    m.refuse(sqlstate, message);
    r = refuse(v, sqlstate, message);
  }
  // The stages first: the recording's approval record (under strict durability, upstream-bound
  // bytes are held from here until it is synced), then the statement's bytes.
  for (Stage* s : all_) s->on_held_decided(m, r);
  if (approved) {
    queue_copy(Peer::Upstream, rewritten ? pooler_.out() : pr::Bytes(msg));
    note_sent(r);
    if (r != nullptr && r->kind == pr::RequestKind::Execute && model_.input_barrier()) {
      flush_upstream();
    }
  }
  retire();
  // What the client sent after the held message is read now (unless the approved message
  // itself may have started a COPY FROM STDIN).
  pause_ = Pause::Barrier;
  maybe_resume();
}

// A client's Query or Execute went upstream (or, while strict recording holds upstream-bound
// bytes, will go at the release): noted for the latency histograms.
void Session::note_sent(pr::Request* r) {
  if (r == nullptr || r->origin != pr::Origin::Client ||
      (r->kind != pr::RequestKind::Query && r->kind != pr::RequestKind::Execute)) {
    return;
  }
  if (holding_upstream_) {
    ++held_statements_;
    r->sent_ns = -static_cast<std::int64_t>(hold_gen_);
  } else {
    w_.note_forwarded_statement();
    r->sent_ns = w_.now_ns();
  }
}

// Its last reply came: its time upstream, from when its bytes went there.
void Session::note_completed(const pr::Request& r) {
  std::int64_t sent = r.sent_ns;
  if (sent < 0) {
    // Sent at the release of its hold, if that release is still among the last kReleases.
    const auto gen = static_cast<std::uint64_t>(-sent);
    if (hold_gen_ - gen >= kReleases) return;
    sent = released_ns_[gen % kReleases];
  }
  if (sent > 0) w_.mutable_stats().upstream_latency.observe(w_.now_ns() - sent);
}

void Session::count_decision(const FrontendMessage& m) {
  WorkerStats& st = w_.mutable_stats();
  // The policy's own judgement (a refusal by a later stage, e.g. recording, is not a deny).
  switch (m.decision->action) {
    case policy::Action::Deny:
      ++st.decided_deny;
      break;
    case policy::Action::Hold:
      // Held, or let through under a JIT grant, or refused at once (nobody can decide it).
      ++(m.verdict == Verdict::Hold     ? st.decided_hold
         : m.verdict == Verdict::Refuse ? st.decided_deny
                                        : st.decided_allow);
      break;
    default:
      ++st.decided_allow;
  }
  if (!m.view.query && m.view.type != pr::fe::kParse) return;
  for (policy::ClassSet c = m.decision->classes; c != 0; c &= c - 1) {
    const auto i = static_cast<std::size_t>(__builtin_ctzll(c));
    if (i < st.classes.size()) ++st.classes[i];
  }
}

}  // namespace pgwarden::core
