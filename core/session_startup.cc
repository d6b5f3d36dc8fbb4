// The Session before the ready phase: the startup packet (SSL and GSS negotiation, cancel
// requests), the upstream connection and its TLS, the authentication exchange (relayed, or the
// auth stage's gateway authentication), BackendKeyData, and the move to the ready phase.
#include <sys/socket.h>

#include <cstring>

#include "core/address.h"
#include "core/log.h"
#include "core/session.h"
#include "core/worker.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
using pr::Next;

Next Session::on_frontend(const pr::Fragment& f) {
  switch (state_) {
    case SessionState::Ready:
      return on_ready_frontend(f);
    case SessionState::Replicating:
      return on_replication_frontend(f);
    case SessionState::Startup: {
      fragment_end_ = f.bytes.data() + f.bytes.size();
      const pr::Bytes packet = fe_msg_.add(f, fe_.held_prefix());
      return packet.empty() ? Next::Continue : on_startup_packet(packet);
    }
    case SessionState::ClientAuth:
      return auth_.on_client_message(f);
    case SessionState::Authenticating:
      // Only the client's own authentication responses (relay mode) may precede ReadyForQuery,
      // or a Terminate.
      if (f.first && f.type != pr::fe::kTerminate &&
          (f.type != pr::fe::kPassword || auth_.upstream() != nullptr)) {
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
  if (w_.too_many_connections()) {
    // As PostgreSQL answers past max_connections, once the startup packet is read.
    PGW_WARN("session: refused: more than --max-connections (%u) client connections",
             w_.config().max_connections);
    fail(pr::sqlstate::kTooManyConnections, "sorry, too many clients already");
    return Next::Stop;
  }
  fe_.set_typed(true);
  return auth_.on_startup(*parsed, packet);
}

void Session::connect_upstream() {
  state_ = SessionState::Connecting;
  if (const int rc = w_.connect_upstream(*this); rc < 0) on_connected(rc);
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
  if (pr::UpstreamAuth* up = auth_.upstream(); up != nullptr) {
    up->allow_cleartext(upstream_.tls != nullptr || w_.upstream().family() == AF_UNIX);
  }
  queue_copy(Peer::Upstream, startup_packet_);
  startup_packet_ = {};
}

Next Session::on_backend(const pr::Fragment& f) {
  switch (state_) {
    case SessionState::Ready:
      return on_ready_backend(f);
    case SessionState::Replicating:
      forward(Peer::Client, f, be_);  // replies, WAL and archives: as the server sends them
      return Next::Continue;
    case SessionState::UpstreamAuth:
      return auth_.on_upstream_message(f);
    default:
      break;
  }
  if (f.type == pr::be::kParameterStatus) {
    // The settings that change how SQL is lexed are followed from the start.
    const pr::Bytes whole = backend_whole(f);
    if (whole.empty()) return Next::Continue;
    (void)model_.on_backend(f.type, whole);
    forward_whole(Peer::Client, f, whole, be_);
    return Next::Continue;
  }
  if (f.type == pr::be::kBackendKeyData && state_ == SessionState::Authenticating) {
    return on_backend_key(f);
  }
  if (f.type == pr::be::kReadyForQuery && f.last && state_ == SessionState::Authenticating) {
    forward(Peer::Client, f, be_);
    on_ready();
    return Next::Continue;
  }
  forward(Peer::Client, f, be_);
  return Next::Continue;
}

// The first ReadyForQuery: the pipeline model and the stages take over (a replication
// connection is relayed as it is: its protocol is not the one they follow).
void Session::on_ready() {
  deadline_ns_ = 0;
  waiting_for_client_ = true;
  fe_.set_max_message_size(w_.config().max_message_size);
  if (!auth_.replication_rule().empty()) {
    state_ = SessionState::Replicating;
  } else {
    state_ = SessionState::Ready;
    role_guard_.set_enabled(auth_.guards_role());
    build_chains();
    if (auth_.internal()) reset_upstream(false);  // say who the pooled session's caller is
  }
  start_recording();
}

void Session::start_recording() {
  if (!recording_) return;
  std::string client = "?";
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(client_.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    client = format_address(reinterpret_cast<sockaddr*>(&ss), len);
  }
  recording_->record_start(client, client_.tls ? client_.tls->describe() : std::string("none"),
                           auth_.replication_rule());
}

// A replication connection: every message goes on unchanged (COPY both ways, WAL, archives);
// the commands (IDENTIFY_SYSTEM, BASE_BACKUP, START_REPLICATION, and SQL on a logical one) are
// recorded, as allowed by the rule, before they go.
Next Session::on_replication_frontend(const pr::Fragment& f) {
  if (f.first && auth_.token_expired()) {
    fail(pr::sqlstate::kInvalidAuthorization, "token expired");
    return Next::Stop;
  }
  if (f.type != pr::fe::kQuery) {
    forward(Peer::Upstream, f, fe_);
    return Next::Continue;
  }
  if (f.first && f.size > w_.config().max_statement_size) {
    fail(pr::sqlstate::kProgramLimitExceeded,
         "pgwarden: a command larger than --max-statement-size");
    return Next::Stop;
  }
  const bool in_place = f.first && f.last && f.offset == 0;
  const pr::Bytes whole = in_place ? f.bytes : fe_msg_.add(f, fe_.held_prefix());
  if (whole.empty()) return Next::Continue;
  if (recording_ && !recording_->record_replication(whole)) {
    fail(pr::sqlstate::kIoError, "pgwarden: the recording is not accepting records");
    return Next::Stop;
  }
  forward_whole(Peer::Upstream, f, whole, fe_);
  if (!in_place) fe_msg_.shrink();
  return Next::Continue;
}

void Session::record_end() {
  if (!recording_) return;
  recording_->on_close();
  // A login that never completed is recorded too (a failed authentication is evidence).
  if (!recording_->started()) {
    if (state_ < SessionState::ClientAuth || !w_.services().recorder->has_room()) return;
    recording_->record_start("?", client_.tls ? client_.tls->describe() : std::string("none"));
  }
  recording_->record_end(end_reason_);
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

}  // namespace pgwarden::core
