#include "core/session.h"

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
    : w_(worker),
      fe_(pr::Side::Frontend, worker.config().max_message_size, /*typed=*/false),
      be_(pr::Side::Backend, worker.config().max_message_size, /*typed=*/true) {
  client_.fd = client_fd;
  last_activity_ns_ = now_ns;
  rec_ = worker.record_log();
  session_id_ = worker.new_session_id();
  if (worker.config().startup_timeout_s > 0) {
    deadline_ns_ = now_ns + seconds_ns(worker.config().startup_timeout_s);
  }
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
    if (!closing_ && !finishing_) check_backpressure(Peer::Client);
  }
}

void Session::feed_frontend(pr::Bytes plain) {
  chunk_end_ = plain.data() + plain.size();
  const auto st = fe_.feed(plain, [this](const pr::Fragment& f) { return on_frontend(f); });
  if (st == pr::FeedStatus::Malformed) {
    ++w_.mutable_stats().protocol_errors;
    PGW_INFO("session: protocol violation from client: %s", fe_.error().c_str());
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
  c.out.push_copy(tls_records_);
}

// The upstream's one-byte answer to our SSLRequest (PostgreSQL docs, "SSL Session Encryption").
void Session::on_upstream_tls_answer(pr::Bytes chunk) {
  upstream_tls_answer_ = false;
  const char answer = static_cast<char>(chunk[0]);
  if (answer == 'S' && chunk.size() == 1) {
    upstream_.tls = std::make_unique<TlsChannel>(
        w_.upstream_tls_context(), w_.upstream_tls_verify_name(), w_.upstream_tls_sni());
    upstream_handshake_ = true;
    if (upstream_.tls->start() != TlsChannel::Status::Ok) {
      fail(pr::sqlstate::kConnectionFailure,
           "pgwarden: TLS with the upstream server failed: " + upstream_.tls->error());
      return;
    }
    w_.want_send(*this, Peer::Upstream);  // the ClientHello
    return;
  }
  if (answer == 'N' && chunk.size() == 1 && !w_.upstream_tls_required()) {
    send_startup_upstream();  // prefer: the server does not do TLS; carry on in the clear
    return;
  }
  // Bytes after 'S' would be plaintext injected before the handshake (cf. CVE-2021-23222).
  PGW_WARN("session: upstream TLS negotiation failed (answer 0x%02x, %zu bytes)",
           static_cast<unsigned>(static_cast<unsigned char>(answer)), chunk.size());
  fail(pr::sqlstate::kConnectionFailure,
       answer == 'N' ? "pgwarden: the upstream server does not support TLS, which is required"
                     : "pgwarden: invalid answer from the upstream server to the TLS request");
}

void Session::send_startup_upstream() {
  if (upstream_auth_) {
    upstream_auth_->allow_cleartext(upstream_.tls != nullptr || w_.upstream().family() == AF_UNIX);
  }
  queue_copy(Peer::Upstream, startup_packet_);
  startup_packet_ = {};
}

Next Session::on_frontend(const pr::Fragment& f) {
  switch (state_) {
    case SessionState::Ready:
      if (f.first && catalog_due_) maybe_resolve_catalog();
      if (f.first) {
        extended_open_ = f.type == pr::fe::kParse || f.type == pr::fe::kBind ||
                         f.type == pr::fe::kDescribe || f.type == pr::fe::kExecute ||
                         f.type == pr::fe::kClose || f.type == pr::fe::kFlush ||
                         (extended_open_ && f.type != pr::fe::kSync && f.type != pr::fe::kQuery);
      }
      if (f.first && (f.type == pr::fe::kQuery || f.type == pr::fe::kSync ||
                      f.type == pr::fe::kFunctionCall)) {
        ++replies_pending_;
      }
      if (token_expires_at_ != 0 && f.first && token_expired()) {
        PGW_INFO("session: token of %s expired; ending the session", identity_.c_str());
        fail(pr::sqlstate::kInvalidAuthorization, "token expired");
        return Next::Stop;
      }
      if (f.first && (f.type == pr::fe::kQuery || f.type == pr::fe::kParse ||
                      f.type == pr::fe::kFunctionCall)) {
        ++w_.mutable_stats().statements;
      }
      if (rec_ != nullptr && f.first) {
        if (f.type == pr::fe::kSync) pending_statements_.push_back({w_.now_ns(), 0, 'S'});
        if (f.type == pr::fe::kTerminate) end_reason_ = "client ended the session (Terminate)";
      }
      if (rec_ != nullptr && f.type == pr::fe::kCopyData) {
        copy_in_bytes_ += f.bytes.size() - (f.first ? 5 - f.offset : 0);
      }
      if ((guard_role_ && (f.type == pr::fe::kQuery || f.type == pr::fe::kParse)) ||
          (rec_ != nullptr &&
           (f.type == pr::fe::kQuery || f.type == pr::fe::kParse || f.type == pr::fe::kBind ||
            f.type == pr::fe::kExecute || f.type == pr::fe::kFunctionCall)) ||
          ((f.type == pr::fe::kQuery || f.type == pr::fe::kParse || f.type == pr::fe::kBind ||
            f.type == pr::fe::kFunctionCall) &&
           w_.policy() != nullptr)) {
        return on_statement(f);
      }
      if (results_ != nullptr && (f.type == pr::fe::kDescribe || f.type == pr::fe::kSync ||
                                  f.type == pr::fe::kClose || f.type == pr::fe::kExecute)) {
        return on_result_control(f);
      }
      forward(Peer::Upstream, f, fe_);
      return Next::Continue;
    case SessionState::Startup: {
      fragment_end_ = f.bytes.data() + f.bytes.size();
      const pr::Bytes packet = fe_msg_.add(f, fe_.held_prefix());
      return packet.empty() ? Next::Continue : on_startup_packet(packet);
    }
    case SessionState::ClientAuth:
      return on_client_auth(f);
    case SessionState::Authenticating:
      // Only the client's own authentication responses (relay mode) may precede ReadyForQuery,
      // or a Terminate.
      if (f.first && f.type != pr::fe::kTerminate &&
          (f.type != pr::fe::kPassword || upstream_auth_)) {
        break;
      }
      forward(Peer::Upstream, f, fe_);
      return Next::Continue;
    case SessionState::Connecting:
    case SessionState::UpstreamAuth:
      break;
  }
  ++w_.mutable_stats().protocol_errors;
  char msg[96];
  std::snprintf(msg, sizeof msg, "unexpected message type 0x%02x before startup completed",
                unsigned{f.type});
  fail(pr::sqlstate::kProtocolViolation, msg);
  return Next::Stop;
}

Next Session::on_startup_packet(pr::Bytes packet) {
  auto parsed = pr::parse_startup(packet);
  if (!parsed) {
    ++w_.mutable_stats().protocol_errors;
    const auto code = parsed.error().code;
    fail(code == pr::Errc::Unsupported ? pr::sqlstate::kFeatureNotSupported
         : code == pr::Errc::Rejected  ? pr::sqlstate::kInvalidAuthorization
                                       : pr::sqlstate::kProtocolViolation,
         parsed.error().message);
    return Next::Stop;
  }
  switch (parsed->kind) {
    case pr::StartupKind::SslRequest:
      if (auto ctx = w_.tls_context(); ctx && !client_.tls) {
        // Bytes pipelined behind an SSLRequest were sent in the clear and must not be
        // mistaken for the start of the TLS session (cf. PostgreSQL, CVE-2021-23214).
        if (fragment_end_ != chunk_end_) {
          fail(pr::sqlstate::kProtocolViolation, "received unencrypted data after SSL request");
          return Next::Stop;
        }
        const std::byte yes{'S'};
        client_.out.push_copy({&yes, 1});
        w_.want_send(*this, Peer::Client);
        client_.tls = std::make_unique<TlsChannel>(std::move(ctx));
        return Next::Stop;
      }
      [[fallthrough]];
    case pr::StartupKind::GssEncRequest: {
      // No TLS or GSS encryption yet: 'N' and the client continues in plaintext (or gives up).
      const std::byte no{'N'};
      queue_copy(Peer::Client, {&no, 1});
      return Next::Continue;
    }
    case pr::StartupKind::Cancel:
      // As PostgreSQL: never answer a CancelRequest, just close.
      w_.route_cancel(parsed->cancel);
      close();
      return Next::Stop;
    case pr::StartupKind::Startup:
      break;
  }
  fe_.set_typed(true);
  start_user_ = pr::startup_param(parsed->params, "user").value_or("");
  start_database_ = pr::startup_param(parsed->params, "database").value_or(start_user_);
  start_app_ = pr::startup_param(parsed->params, "application_name").value_or("");
  if (w_.auth() != nullptr) return begin_client_auth(*parsed);
  startup_packet_.assign(packet.data(), packet.size());
  state_ = SessionState::Connecting;
  if (const int rc = w_.connect_upstream(*this); rc < 0) {
    on_connected(rc);
    return Next::Stop;
  }
  return Next::Continue;
}

Next Session::on_backend(const pr::Fragment& f) {
  if (state_ == SessionState::UpstreamAuth) return on_upstream_auth(f);
  if (f.type == pr::be::kParameterStatus) on_parameter_status(f);
  if (state_ == SessionState::Ready) {
    if (catalog_pending_) return on_catalog_reply(f);
    if (results_ != nullptr) {
      Next next = Next::Continue;
      if (on_backend_masked(f, next)) return next;
    }
    // Errors are read whole: a refused statement's stand-in error is swapped for ours.
    if (f.type == pr::be::kErrorResponse && (rec_ != nullptr || !denials_.empty())) {
      const pr::Bytes whole = backend_whole(f);
      return whole.empty() ? Next::Continue : on_backend_error(f, whole);
    }
    if (rec_ != nullptr) record_backend(f);
  }
  if (f.type == pr::be::kBackendKeyData && state_ == SessionState::Authenticating) {
    return on_backend_key(f);
  }
  if (f.type == pr::be::kReadyForQuery && f.last) {
    waiting_for_client_ = true;
    if (replies_pending_ != 0) --replies_pending_;
    if (!f.bytes.empty()) tx_status_ = static_cast<char>(f.bytes.back());
    // A refused statement's stand-in is answered before the ReadyForQuery that ends its part of
    // the stream (the server skips it after an earlier error): forget it then.
    for (Denial& d : denials_) --d.zs_left;
    std::erase_if(denials_, [](const Denial& d) { return d.zs_left == 0; });
    if (state_ == SessionState::Authenticating) {
      state_ = SessionState::Ready;
      deadline_ns_ = 0;
      if (const policy::Policy* pol = w_.policy(); pol != nullptr) current_rule(*pol);
      if (rec_ != nullptr) record_start();
    }
    if (!deferred_error_.empty() && replies_pending_ == 0) {
      forward(Peer::Client, f, be_);
      fail(deferred_sqlstate_, deferred_error_);
      return Next::Stop;
    }
  }
  forward(Peer::Client, f, be_);
  return Next::Continue;
}

// The whole backend message `f` belongs to: in place when it came in one piece, else assembled
// (empty until its last fragment). One caller per message: the assembler takes each fragment once.
pr::Bytes Session::backend_whole(const pr::Fragment& f) {
  return f.first && f.last && f.offset == 0 ? f.bytes : be_msg_.add(f, be_.held_prefix());
}

// BackendKeyData: the client gets a key of ours; the real one stays here for cancels.
Next Session::on_backend_key(const pr::Fragment& f) {
  const pr::Bytes whole = backend_whole(f);
  if (whole.empty()) return Next::Continue;
  const auto key = pr::read_backend_key(whole);
  if (!key) {
    fail(pr::sqlstate::kProtocolViolation, "pgwarden: invalid BackendKeyData from upstream");
    return Next::Stop;
  }
  if (gateway_key_.pid != 0) w_.release_cancel_key(gateway_key_);
  gateway_key_ = w_.issue_cancel_key(*key);
  if (whole.data() == f.bytes.data()) {
    // The receive buffer is ours and writable: rewrite in place and forward it from there.
    pr::write_backend_key({const_cast<std::byte*>(whole.data()), whole.size()}, gateway_key_);
    forward(Peer::Client, f, be_);
  } else {
    std::basic_string<std::byte> msg;
    pr::append_backend_key(msg, gateway_key_);
    queue_copy(Peer::Client, msg);
  }
  return Next::Continue;
}

// ---------------------------------------------------------------------------------------------
// Bytes out

void Session::forward(Peer to, const pr::Fragment& f, const pr::Framer& from) {
  Conn& c = conn(to);
  if (c.dead) return;
  if (to == Peer::Upstream && holding_) {  // strict recording: waits for durability
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
  if (to == Peer::Upstream && holding_) {
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

// ---------------------------------------------------------------------------------------------
// Connection events

void Session::on_connected(int result) {
  if (closing_ || finishing_) return;
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
  state_ = upstream_auth_ ? SessionState::UpstreamAuth : SessionState::Authenticating;
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
    // The client left: deliver what it sent (e.g. Terminate) upstream, then close.
    client_.dead = true;
    if (end_reason_.empty()) end_reason_ = "client disconnected";
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
  check_approval_timeout(now_ns);
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
// stop reading the client, relay replies until the upstream is ready again (bounded by the finish
// timeout), then end with 08P01.
void Session::fail_after_replies(std::string_view sqlstate, const std::string& message) {
  if (state_ != SessionState::Ready || replies_pending_ == 0 || upstream_.dead) {
    fail(sqlstate, message);
    return;
  }
  deferred_sqlstate_ = std::string(sqlstate);
  deferred_error_ = message;
  deadline_ns_ = w_.now_ns() + kFinishTimeoutNs;
  client_.eof = true;
  if (client_.recv_armed) w_.cancel_recv(*this, Peer::Client);
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
  // Let the upstream backend end cleanly rather than log an unexpected EOF.
  if (!upstream_.dead && upstream_.fd >= 0 && state_ >= SessionState::Authenticating &&
      !fe_.in_body()) {
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
  withdraw_approval();
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
