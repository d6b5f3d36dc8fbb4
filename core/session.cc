// The Session's transport: bytes in (plain or TLS) through the framers, bytes out through the
// send queues, backpressure, holds, and winding down.
#include "core/session.h"

#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstring>

#include "core/log.h"
#include "core/worker.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
using pr::Next;

namespace {
constexpr std::int64_t kNsPerSec = 1'000'000'000;
constexpr std::int64_t kFinishTimeoutNs = 5 * kNsPerSec;  // bound on flushing before a close

std::int64_t seconds_ns(double s) {
  return static_cast<std::int64_t>(s * 1e9);
}
}  // namespace

Session::Session(Worker& worker, int client_fd, std::int64_t now_ns)
    : StageHost(worker.services()),
      w_(worker),
      // Before authentication completes a client may send only small messages, as PostgreSQL
      // allows (PG_MAX_AUTH_TOKEN_LENGTH): the limit rises once the session is ready.
      fe_(pr::Side::Frontend, kMaxAuthMessage, /*typed=*/false),
      be_(pr::Side::Backend, worker.config().max_message_size, /*typed=*/true),
      auth_(*this),
      role_guard_(*this),
      policy_(*this),
      masking_(*this),
      approvals_(*this),
      pooler_(*this),
      pooled_(worker.config().upstream_pooler == "transaction") {
  client_.fd = client_fd;
  last_activity_ns_ = started_ns_ = now_ns;
  session_id_ = worker.new_session_id();
  link_stages();
  std::uint64_t r[2] = {0, 0};
  if (::getrandom(r, sizeof r, 0) != sizeof r) r[0] = session_id_ * 0x9E3779B97F4A7C15ull;
  char name[64];
  std::snprintf(name, sizeof name, "pgwarden refused %016llx%016llx",
                static_cast<unsigned long long>(r[0]), static_cast<unsigned long long>(r[1]));
  standin_portal_ = name;
  if (worker.config().startup_timeout_s > 0) {
    deadline_ns_ = now_ns + seconds_ns(worker.config().startup_timeout_s);
  }
}

Session::~Session() = default;

// The stages' links to each other, and a recording for the session in force (again when a pooled
// session passes to another caller: session_handover.cc).
void Session::link_stages() {
  if (RecordSink* sink = w_.services().recorder; sink != nullptr) {
    recording_ = std::make_unique<RecordingStage>(*this, *sink, masking_);
    recording_->set_rows(w_.config().record_rows);
  }
  policy_.set_masking(&masking_);
  approvals_.set_masking(&masking_);
  approvals_.set_policy(&policy_);
  all_ = Chain{};
  all_.add(&role_guard_);
  all_.add(&policy_);
  all_.add(&masking_);
  all_.add(&approvals_);
  if (recording_) all_.add(recording_.get());
}

// Which stages act now. Without a policy the policy stage judges nothing, approvals hold nothing
// and masking masks nothing (a masking stage still owed replies to its own requests stays in
// until the next change). The role guard acts once authentication enabled it; recording always.
void Session::build_chains() noexcept {
  const policy::Policy* pol = core().policy;
  chains_for_ = pol != nullptr ? pol->id() : 0;
  front_ = front_gated_ = done_ = retired_ = back_ = Chain{};
  const auto add = [this](Stage* s, bool front, bool done, bool retired, bool back) {
    const Interest in = s->interest();
    if (front) {
      front_.add(s, in.frontend);
      front_gated_.add(s, in.gates ? TypeSet::all() : in.frontend);
    }
    if (done) done_.add(s, in.frontend_done);
    if (retired) retired_.add(s, in.retired);
    if (back) back_.add(s, in.backend);
  };
  if (pooled_) add(&pooler_, true, false, true, true);
  if (role_guard_.enabled()) add(&role_guard_, true, false, false, false);
  // Back: the replies to its own query. A check due or sent under an earlier policy is answered
  // to it (never to the client), whatever the policy now says.
  if (pol != nullptr) {
    add(&policy_, true, true, true, policy_.check_open() || policy_.checks_search_path());
  } else if (policy_.check_open()) {
    add(&policy_, false, false, false, true);
  }
  masking_engaged_ =
      masking_.profile() != nullptr || model_.own_in_flight() != 0 || masking_.copy_in_flight();
  record_rows_ = recording_ && w_.config().record_rows != 0;
  if (!masking_engaged_) masking_.trim();
  if (masking_engaged_) add(&masking_, true, true, true, true);
  if (pol != nullptr) add(&approvals_, true, false, false, false);
  if (recording_) add(recording_.get(), true, true, true, true);
}

// ---------------------------------------------------------------------------------------------
// Bytes in

void Session::on_recv(Peer from, pr::Bytes chunk, std::uint16_t bid) {
  if (finishing_ || closing_) return;  // winding down: read bytes are dropped
  if (from == Peer::Client && !deferred_error_.empty()) return;  // after a protocol violation
  last_activity_ns_ = w_.now_ns();
  cur_bid_ = bid;
  if (from == Peer::Client) {
    waiting_for_client_ = false;
    if (client_.tls) {
      on_tls(Peer::Client, chunk);
    } else {
      feed_frontend(chunk);
    }
    if (!closing_ && !finishing_) check_backpressure(Peer::Upstream);
  } else {
    if (upstream_tls_answer_) {
      on_upstream_tls_answer(chunk);
    } else if (upstream_.tls) {
      on_tls(Peer::Upstream, chunk);
    } else {
      feed_backend(chunk);
    }
    if (!closing_ && !finishing_) {
      check_backpressure(Peer::Client);
      maybe_resume();
    }
  }
}

void Session::feed_frontend(pr::Bytes plain) {
  if (pause_ != Pause::None || model_.terminated()) {
    // Input waits (or the client said Terminate): keep it, unprocessed.
    if (!model_.terminated()) pending_in_.append(plain.data(), plain.size());
    if (pending_in_.size() > w_.config().max_buffered_bytes && client_.recv_armed) {
      w_.cancel_recv(*this, Peer::Client);
    }
    return;
  }
  chunk_end_ = plain.data() + plain.size();
  const auto st = fe_.feed(plain, [this](const pr::Fragment& f) { return on_frontend(f); });
  if (st == pr::FeedStatus::Malformed) {
    ++w_.mutable_stats().protocol_errors;
    PGW_INFO("session: protocol violation from client: %s", fe_.error().c_str());
    if (state_ == SessionState::Startup && !fe_.typed()) {
      // An impossible startup packet length: PostgreSQL only logs it and closes.
      close();
      return;
    }
    fail_after_replies(pr::sqlstate::kProtocolViolation, fe_.error());
  }
}

void Session::feed_backend(pr::Bytes plain) {
  const auto st = be_.feed(plain, [this](const pr::Fragment& f) { return on_backend(f); });
  if (st == pr::FeedStatus::Malformed) {
    ++w_.mutable_stats().protocol_errors;
    PGW_WARN("session: protocol violation from upstream: %s", be_.error().c_str());
    fail(pr::sqlstate::kProtocolViolation, "pgwarden: invalid message from the upstream server");
  }
}

// Encrypted bytes from a TLS peer: decrypt, answer the handshake, frame the plaintext (copied
// onwards, since it does not live in a receive buffer).
void Session::on_tls(Peer from, pr::Bytes encrypted) {
  Conn& c = conn(from);
  tls_plain_in_.clear();
  const auto st = c.tls->on_encrypted(encrypted, tls_plain_in_);
  if (st == TlsChannel::Status::Failed) {
    if (from == Peer::Client) {
      PGW_INFO("session: client %s", c.tls->error().c_str());
      close();  // no way to tell the client anything over a broken TLS session
    } else {
      PGW_WARN("session: upstream %s", c.tls->error().c_str());
      fail(pr::sqlstate::kConnectionFailure,
           "pgwarden: TLS with the upstream server failed: " + c.tls->error());
    }
    return;
  }
  w_.want_send(*this, from);  // handshake records, if any
  if (st == TlsChannel::Status::Closed) {
    on_eof(from, 0);
    return;
  }
  if (from == Peer::Upstream && upstream_handshake_ && c.tls->handshake_done()) {
    upstream_handshake_ = false;
    send_startup_upstream();
  }
  if (tls_plain_in_.empty()) return;
  copy_fragments_ = true;
  if (from == Peer::Client) {
    feed_frontend(tls_plain_in_);
  } else {
    feed_backend(tls_plain_in_);
  }
  copy_fragments_ = false;
}

void Session::seal_output(Peer to) {
  Conn& c = conn(to);
  if (!c.tls || c.dead) return;
  tls_records_.clear();  // reused: no allocation per flush once warm
  if (c.tls->encrypt(c.plain_out, tls_records_) != TlsChannel::Status::Ok) {
    PGW_INFO("session: %s", c.tls->error().c_str());
    c.plain_out.clear();
    close();
    return;
  }
  c.plain_out.clear();
  if (c.plain_out.capacity() > kShrinkAbove) c.plain_out.shrink_to_fit();
  c.out.push_copy(tls_records_);
  if (tls_records_.capacity() > kShrinkAbove) decltype(tls_records_)().swap(tls_records_);
}

// ---------------------------------------------------------------------------------------------
// Bytes out

void Session::forward(Peer to, const pr::Fragment& f, const pr::Framer& from) {
  Conn& c = conn(to);
  if (c.dead) return;
  if (to == Peer::Upstream && holding_upstream_) {  // strict recording: waits for durability
    if (f.first && f.offset != 0) held_.append(from.held_prefix().data(), f.offset);
    held_.append(f.bytes.data(), f.bytes.size());
    return;
  }
  if (c.tls) {
    if (f.first && f.offset != 0) c.plain_out.append(from.held_prefix().data(), f.offset);
    c.plain_out.append(f.bytes.data(), f.bytes.size());
    w_.want_send(*this, to);
    return;
  }
  // A header split across reads: its first bytes are held by the framer, not in this chunk.
  if (f.first && f.offset != 0) c.out.push_copy(from.held_prefix());
  if (copy_fragments_) {
    c.out.push_copy(f.bytes);
  } else {
    c.out.push_buffer(f.bytes.data(), static_cast<std::uint32_t>(f.bytes.size()), cur_bid_,
                      w_.buffers());
  }
  w_.want_send(*this, to);
}

void Session::forward_whole(Peer to, const pr::Fragment& f, pr::Bytes whole,
                            const pr::Framer& from) {
  if (whole.data() == f.bytes.data()) {
    forward(to, f, from);
  } else {
    queue_copy(to, whole);
  }
}

void Session::queue_copy(Peer to, pr::Bytes bytes) {
  Conn& c = conn(to);
  if (c.dead) return;
  if (to == Peer::Upstream && holding_upstream_) {
    held_.append(bytes.data(), bytes.size());
    return;
  }
  if (c.tls) {
    c.plain_out.append(bytes.data(), bytes.size());
  } else {
    c.out.push_copy(bytes);
  }
  w_.want_send(*this, to);
}

// A reader that does not keep up stops reads from the other side instead of growing the queue.
void Session::check_backpressure(Peer to) {
  Conn& c = conn(to);
  Conn& other = conn(to == Peer::Client ? Peer::Upstream : Peer::Client);
  if (c.out.footprint() > w_.config().max_buffered_bytes && !other.recv_paused) {
    other.recv_paused = true;
    if (other.recv_armed) w_.cancel_recv(*this, to == Peer::Client ? Peer::Upstream : Peer::Client);
  }
}

void Session::on_send_done(Peer to, int result) {
  Conn& c = conn(to);
  if (c.dead) {
    maybe_close_after_flush();
    return;
  }
  if (result < 0) {
    // The peer is gone; nothing queued for it can be delivered.
    c.dead = true;
    c.eof = true;
    if (to == Peer::Client) {
      close();
    } else {
      ++w_.mutable_stats().upstream_failures;
      fail(pr::sqlstate::kConnectionFailure,
           "pgwarden: lost the connection to the upstream server");
    }
    return;
  }
  c.out.consume(static_cast<std::size_t>(result), w_.buffers());
  if (!c.out.empty()) w_.want_send(*this, to);
  Conn& other = conn(to == Peer::Client ? Peer::Upstream : Peer::Client);
  if (other.recv_paused && c.out.footprint() <= w_.config().max_buffered_bytes / 2) {
    other.recv_paused = false;
    if (!other.recv_armed && !other.eof && !other.starved && !finishing_ && !closing_) {
      w_.arm_recv(*this, to == Peer::Client ? Peer::Upstream : Peer::Client);
    }
  }
  maybe_close_after_flush();
}

// Client reads stop while input is paused or upstream bytes are held, and resume after.
void Session::set_client_held() {
  const bool held = holding_upstream_ || pause_ != Pause::None;
  if (held == client_.held) return;
  client_.held = held;
  if (held) {
    if (client_.recv_armed) w_.cancel_recv(*this, Peer::Client);
  } else if (!closing_ && !finishing_) {
    w_.arm_recv(*this, Peer::Client);
  }
}

void Session::hold_upstream() {
  if (!holding_upstream_) {
    ++hold_gen_;
    hold_since_ns_ = w_.now_ns();
    released_ns_[hold_gen_ % kReleases] = 0;
  }
  holding_upstream_ = true;
  set_client_held();
}

void Session::release_upstream() {
  if (!holding_upstream_) return;
  holding_upstream_ = false;
  released_ns_[hold_gen_ % kReleases] = w_.now_ns();
  if (held_statements_ != 0) {
    w_.mutable_stats().gateway_latency.observe(w_.now_ns() - hold_since_ns_, held_statements_);
    held_statements_ = 0;
  }
  if (closing_ || finishing_) return;
  if (!held_.empty()) {
    queue_copy(Peer::Upstream, held_);
    held_.clear();
    if (held_.capacity() > kShrinkAbove) decltype(held_)().swap(held_);
    check_backpressure(Peer::Upstream);
  }
  set_client_held();
}

// ---------------------------------------------------------------------------------------------
// Connection events

void Session::on_connected(int result) {
  if (closing_ || finishing_) return;
  w_.mutable_stats().upstream_up.set(result < 0 ? 0 : 1);
  w_.mutable_stats().upstream_tried.set(1);
  if (result < 0) {
    ++w_.mutable_stats().upstream_failures;
    const char* why = result == -ECANCELED ? "connection timed out" : std::strerror(-result);
    PGW_WARN("session: cannot connect to upstream %s: %s", w_.upstream().text.c_str(), why);
    std::string msg = "pgwarden: could not connect to the upstream server at ";
    msg += w_.upstream().text;
    msg += ": ";
    msg += why;
    fail(pr::sqlstate::kConnectionFailure, msg);
    return;
  }
  state_ = auth_.upstream() != nullptr ? SessionState::UpstreamAuth : SessionState::Authenticating;
  if (w_.upstream_tls_context()) {
    // Ask for TLS first; the startup packet follows the handshake (or the server's 'N').
    const std::byte ssl_request[8] = {std::byte{0},    std::byte{0},    std::byte{0},
                                      std::byte{8},    std::byte{0x04}, std::byte{0xd2},
                                      std::byte{0x16}, std::byte{0x2f}};
    queue_copy(Peer::Upstream, ssl_request);
    upstream_tls_answer_ = true;
  } else {
    send_startup_upstream();
  }
  w_.arm_recv(*this, Peer::Upstream);
}

void Session::on_eof(Peer from, int error) {
  Conn& c = conn(from);
  c.eof = true;
  if (from == Peer::Client) {
    // The client left: deliver what it sent (e.g. Terminate) upstream, then close. Nothing can
    // reach the client any more, so nothing waits for its sake.
    client_.dead = true;
    if (end_reason_.empty()) end_reason_ = "client disconnected";
    if (state_ < SessionState::Authenticating || upstream_.fd < 0) {
      close();
      return;
    }
  } else {
    if (end_reason_.empty()) end_reason_ = "upstream server closed the connection";
    PGW_DEBUG("session: upstream closed (%s)", error ? std::strerror(error) : "eof");
    // Whatever the server said last (often a FATAL ErrorResponse) still reaches the client.
    upstream_.dead = true;
  }
  finish();
}

void Session::on_tick(std::int64_t now_ns) {
  if (closing_) return;
  approvals_.on_tick(now_ns);
  if (closing_) return;
  // While a statement is held the client's input is not read: a client that went away (killed,
  // or closed its socket) is noticed here, so its statement cannot be approved and run for no one.
  if (approvals_.waiting() && client_.fd >= 0 && !client_.dead) {
    pollfd p{client_.fd, POLLRDHUP, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
      on_eof(Peer::Client, 0);
      return;
    }
  }
  if (deadline_ns_ != 0 && now_ns > deadline_ns_) {
    if (finishing_) {
      close();
      return;
    }
    if (!deferred_error_.empty()) {
      fail(deferred_sqlstate_, deferred_error_);
      return;
    }
    char msg[96];
    std::snprintf(msg, sizeof msg, "pgwarden: startup did not complete within %g s",
                  w_.config().startup_timeout_s);
    fail(pr::sqlstate::kConnectionFailure, msg);
    return;
  }
  const double idle = w_.config().idle_timeout_s;
  if (idle > 0 && state_ == SessionState::Ready && waiting_for_client_ && !finishing_ &&
      now_ns - last_activity_ns_ > seconds_ns(idle)) {
    fail(pr::sqlstate::kIdleSessionTimeout, "terminating connection due to idle-session timeout");
  }
}

void Session::terminate_for_shutdown() {
  fail(pr::sqlstate::kAdminShutdown, "terminating connection due to administrator command");
}

// ---------------------------------------------------------------------------------------------
// Winding down

// Bad bytes from the client. As PostgreSQL would, answer what was validly sent before them first:
// stop reading the client, relay replies until everything due is answered (bounded by the finish
// timeout), then end with the error.
void Session::fail_after_replies(std::string_view sqlstate, const std::string& message) {
  if (state_ != SessionState::Ready || model_.settled() || upstream_.dead) {
    fail(sqlstate, message);
    return;
  }
  deferred_sqlstate_ = std::string(sqlstate);
  deferred_error_ = message;
  deadline_ns_ = w_.now_ns() + kFinishTimeoutNs;
  client_.eof = true;
  if (client_.recv_armed) w_.cancel_recv(*this, Peer::Client);
  if (model_.copy_in()) {
    // The server waits for COPY data: end the COPY so that nothing of it is committed.
    std::basic_string<std::byte> cf;
    pr::append_copy_fail(cf, "pgwarden: " + message);
    queue_copy(Peer::Upstream, cf);
    pr::FrontendView v;
    std::string why;
    if (pr::read_frontend(cf, v, why)) model_.commit(v);
  }
}

void Session::fail(std::string_view sqlstate, std::string_view message) {
  if (closing_ || finishing_) return;
  if (end_reason_.empty()) end_reason_ = std::string(sqlstate) + " " + std::string(message);
  // An error can only be injected between messages of the client's stream.
  if (!client_.dead && !be_.in_body()) {
    std::basic_string<std::byte> err;
    pr::append_error(err, "FATAL", sqlstate, message);
    queue_copy(Peer::Client, err);
  }
  // Let the upstream backend end cleanly rather than log an unexpected EOF; a COPY FROM STDIN in
  // progress is failed first, so that none of it is committed.
  if (!upstream_.dead && upstream_.fd >= 0 && state_ >= SessionState::Authenticating &&
      !fe_.in_body()) {
    holding_upstream_ = false;  // what was held is not sent: the session ends
    if (state_ == SessionState::Ready && model_.copy_in()) {
      std::basic_string<std::byte> cf;
      pr::append_copy_fail(cf, "pgwarden: the session ends: " + std::string(message));
      queue_copy(Peer::Upstream, cf);
    }
    const std::byte terminate[5] = {std::byte{'X'}, std::byte{0}, std::byte{0}, std::byte{0},
                                    std::byte{4}};
    queue_copy(Peer::Upstream, terminate);
  }
  finish();
}

void Session::finish() {
  if (finishing_ || closing_) return;
  finishing_ = true;
  deadline_ns_ = w_.now_ns() + kFinishTimeoutNs;
  for (Peer p : {Peer::Client, Peer::Upstream}) {
    Conn& c = conn(p);
    c.eof = true;
    if (c.recv_armed) w_.cancel_recv(*this, p);
  }
  maybe_close_after_flush();
}

void Session::maybe_close_after_flush() {
  if (!finishing_ || closing_) return;
  for (Peer p : {Peer::Client, Peer::Upstream}) {
    const Conn& c = conn(p);
    const bool unsealed = !c.plain_out.empty();  // TLS: queued but not yet encrypted
    if (!c.dead && c.fd >= 0 && (c.send_inflight || !c.out.empty() || unsealed)) return;
  }
  close();
}

void Session::close() {
  if (closing_) return;
  approvals_.on_close();
  record_end();
  closing_ = true;
  finishing_ = true;
  for (Peer p : {Peer::Client, Peer::Upstream}) {
    Conn& c = conn(p);
    c.eof = true;
    if (c.fd >= 0 && inflight_ != 0) w_.cancel_all(*this, p);
  }
}

void Session::release_resources() noexcept {
  for (Peer p : {Peer::Client, Peer::Upstream}) {
    Conn& c = conn(p);
    c.out.clear(w_.buffers());
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
  }
  if (gateway_key_.pid != 0) w_.release_cancel_key(gateway_key_);
  gateway_key_ = {};
}

}  // namespace pgwarden::core
