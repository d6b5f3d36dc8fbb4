// One client connection and its upstream connection: the session pipeline. Frontend bytes go
// through the framer and the session state machine to the upstream; backend bytes come back
// through the backend framer to the client. Unchanged messages are forwarded from the receive
// buffer they arrived in. A Session lives on the core that accepted it, for life; its Worker does
// all I/O on its behalf and frees it only after the last submission completed.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/approvals.h"
#include "core/out_queue.h"
#include "core/tls.h"
#include "policy/client_auth.h"
#include "policy/masking.h"
#include "policy/rules.h"
#include "protocol/auth.h"
#include "protocol/framer.h"
#include "protocol/startup.h"

namespace pgwarden::core {

class Worker;
class RecordLog;

enum class Peer : std::uint8_t { Client, Upstream };

enum class SessionState : std::uint8_t {
  Startup,         // reading the startup packet (SSLRequest/GSSENCRequest answered 'N')
  ClientAuth,      // gateway auth: the client proves its identity to pgwarden
  Connecting,      // connecting upstream
  UpstreamAuth,    // gateway auth: pgwarden logs in upstream with its own credential
  Authenticating,  // until the first ReadyForQuery (relay mode: the client's own auth exchange)
  Ready,           // steady state
};

// One socket of the session.
struct Conn {
  static constexpr std::size_t kMaxIov = 64;
  int fd = -1;
  OutQueue out;
  bool recv_armed = false;   // a multishot receive is in flight
  bool recv_paused = false;  // backpressure: the other side's queue is full
  bool starved = false;      // waiting for receive buffers
  bool send_inflight = false;
  bool send_wanted = false;  // on the worker's list of sockets to send on
  bool eof = false;          // no more reads (peer closed, error, or finishing)
  bool dead = false;         // cannot be written to any more
  bool held = false;         // strict recording: no reads until the session's records are durable
  std::unique_ptr<TlsChannel> tls;         // set once this side speaks TLS
  std::basic_string<std::byte> plain_out;  // TLS: plaintext queued, encrypted before sending
  msghdr msg{};
  iovec iov[kMaxIov]{};
};

class alignas(16) Session {
 public:
  Session(Worker& worker, int client_fd, std::int64_t now_ns);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Events from the worker.
  void on_recv(Peer from, protocol::Bytes chunk, std::uint16_t bid);
  void on_eof(Peer from, int error);
  void on_connected(int result);
  void on_send_done(Peer to, int result);
  void on_tick(std::int64_t now_ns);
  // The grace period ended: say 57P01 to the client and wind down.
  void terminate_for_shutdown();
  // Closes at once, dropping whatever is still queued.
  void force_close() { close(); }
  // TLS: encrypts the plaintext queued for `to` into its send queue (once per loop iteration).
  void seal_output(Peer to);
  // Strict recording: the records this session waited for are durable; forward what was held.
  void on_record_durable();
  // An approval for this session's held statement was decided (admin endpoint).
  void on_approval(const ApprovalDecision& d);
  std::uint64_t id() const noexcept { return session_id_; }

  Conn& conn(Peer p) noexcept { return p == Peer::Client ? client_ : upstream_; }
  bool closing() const noexcept { return closing_; }
  // True when the session can be freed: closing and nothing in flight.
  bool releasable() const noexcept { return closing_ && inflight_ == 0; }
  void release_resources() noexcept;  // closes sockets, returns buffers and the cancel key
  SessionState state() const noexcept { return state_; }

  std::uint32_t inflight_ = 0;  // submissions (and waits) the worker still owes completions for
  Session* prev_ = nullptr;     // the worker's intrusive list of live sessions
  Session* next_ = nullptr;

 private:
  protocol::Next on_frontend(const protocol::Fragment& f);
  protocol::Next on_backend(const protocol::Fragment& f);
  protocol::Next on_startup_packet(protocol::Bytes packet);
  protocol::Next on_backend_key(const protocol::Fragment& f);
  protocol::Bytes backend_whole(const protocol::Fragment& f);
  // Gateway authentication (session_auth.cc).
  protocol::Next begin_client_auth(const protocol::StartupPacket& startup);
  protocol::Next on_client_auth(const protocol::Fragment& f);
  protocol::Next on_upstream_auth(const protocol::Fragment& f);
  bool token_expired() const;
  // Query/Parse/Bind/Execute read whole: role guard, recording, refusal when recording fails.
  protocol::Next on_statement(const protocol::Fragment& f);
  // Recording (session_record.cc).
  void record_start();
  bool record_statement(char type, protocol::Bytes message, const policy::Decision* decision);
  void record_backend(const protocol::Fragment& f);
  void record_row(protocol::Bytes whole);
  void record_outcome(char type, protocol::Bytes whole);
  // Statement policy.
  const policy::Rule* current_rule(const policy::Policy& policy);
  void refuse_statement(char type, const std::string& message);
  void answer_here(std::string_view sqlstate, const std::string& message);
  std::string denial_marker(std::uint32_t id) const;
  protocol::Next on_backend_error(const protocol::Fragment& f, protocol::Bytes whole);
  // Masking (session_mask.cc).
  void update_masking(const policy::Policy& policy, std::string_view who,
                      const std::vector<std::string>& groups);
  const policy::MaskProfile* masking_now();
  bool on_backend_masked(const protocol::Fragment& f, protocol::Next& next);
  protocol::Next on_result_control(const protocol::Fragment& f);
  protocol::Next on_catalog_reply(const protocol::Fragment& f);
  void maybe_resolve_catalog();
  void catalog_changed(policy::ClassSet classes);
  std::string_view masked_for_record(std::string_view text);
  std::string catalog_cache_key() const;
  // Tracks standard_conforming_strings: with it off, PostgreSQL reads backslashes in '...' as
  // escapes and its view of where a literal ends differs from the classifier's.
  void on_parameter_status(const protocol::Fragment& f);
  std::string lexing_hazard(protocol::Bytes whole) const;
  void start_hold();
  void release_hold();
  void begin_approval(char type, std::size_t size, std::string_view name, std::string_view text,
                      const policy::Decision& d);
  void finish_approval(bool approved, const std::string& outcome);
  void withdraw_approval();
  void check_approval_timeout(std::int64_t now_ns);
  void record_end();
  void refuse_unrecorded(char type);
  std::string peer_address() const;
  void start_upstream(const policy::AuthenticatedCaller& caller);
  void forward(Peer to, const protocol::Fragment& f, const protocol::Framer& from);
  void queue_copy(Peer to, protocol::Bytes bytes);
  // A whole message of fragment `f`: forwarded in place when it came in one piece, else copied.
  void forward_whole(Peer to, const protocol::Fragment& f, protocol::Bytes whole,
                     const protocol::Framer& from);
  void check_backpressure(Peer to);
  void on_tls(Peer from, protocol::Bytes encrypted);
  void feed_frontend(protocol::Bytes plain);
  void feed_backend(protocol::Bytes plain);
  void on_upstream_tls_answer(protocol::Bytes chunk);
  void send_startup_upstream();

  // Sends a FATAL ErrorResponse to the client if the client stream is at a message boundary,
  // then winds the session down.
  void fail(std::string_view sqlstate, std::string_view message);
  void fail_after_replies(std::string_view sqlstate, const std::string& message);
  // Stops reading, flushes what is queued (bounded by a deadline), then closes.
  void finish();
  // Cancels everything in flight; the worker frees the session after the last completion.
  void close();
  void maybe_close_after_flush();

  Worker& w_;
  Conn client_;
  Conn upstream_;
  protocol::Framer fe_;
  protocol::Framer be_;
  protocol::Assembler fe_msg_;  // frontend messages read whole (startup, authentication)
  protocol::Assembler be_msg_;  // backend messages read whole (BackendKeyData, authentication)
  SessionState state_ = SessionState::Startup;
  bool finishing_ = false;
  bool closing_ = false;
  bool waiting_for_client_ = false;    // the last backend message was ReadyForQuery
  std::uint32_t replies_pending_ = 0;  // Query/Sync/FunctionCall forwarded, ReadyForQuery not seen
  std::string deferred_error_;         // a client protocol violation waiting for those replies
  std::string deferred_sqlstate_;
  std::uint16_t cur_bid_ = 0;     // receive buffer of the chunk being handled
  std::int64_t deadline_ns_ = 0;  // startup or finish deadline; 0 = none
  std::int64_t last_activity_ns_ = 0;
  protocol::BackendKey gateway_key_{};
  std::basic_string<std::byte> startup_packet_;  // what goes upstream once connected
  // Gateway authentication only.
  std::basic_string<std::byte> client_params_;  // the client's startup parameters
  std::unique_ptr<policy::ClientAuth> client_auth_;
  std::unique_ptr<protocol::UpstreamAuth> upstream_auth_;
  std::string identity_;               // the authenticated caller, for logs
  std::string peer_;                   // the client's address (gateway auth), for logs/throttle
  std::int64_t token_expires_at_ = 0;  // seconds since the epoch; 0 = no expiry
  bool guard_role_ = false;            // refuse statements that would leave the mapped role
  // Recording (null rec_: off).
  struct PendingStatement {
    std::int64_t start_ns;
    std::uint32_t seq;
    char kind;  // 'Q' simple query, 'E' execute, 'S' sync
  };
  RecordLog* rec_ = nullptr;
  std::uint64_t session_id_ = 0;
  bool recorded_start_ = false;
  bool recorded_end_ = false;
  std::string end_reason_;
  std::string start_user_, start_database_, start_app_, role_, database_;
  std::uint32_t statement_seq_ = 0;
  std::deque<PendingStatement> pending_statements_;
  std::uint64_t copy_in_bytes_ = 0, copy_out_bytes_ = 0;
  std::uint32_t rows_recorded_ = 0;  // of the statement in progress (--record-rows)
  char tx_status_ = 'I';
  // Statement policy. A refused Query/Parse/Bind that cannot be answered at once is replaced
  // upstream by a message that fails with a marker, so the server skips the rest of the pipeline
  // and rolls back its implicit transaction; the marked error is swapped for ours.
  struct Denial {
    std::uint32_t id;
    std::uint32_t zs_left;  // ReadyForQuery messages until its part of the stream is over
    std::string message;
  };
  const policy::Rule* rule_ = nullptr;
  std::uint64_t rule_policy_id_ = 0;
  std::vector<std::pair<std::string, std::string>> denied_statements_;  // name -> message
  std::deque<Denial> denials_;
  std::uint32_t denial_seq_ = 0;
  bool standard_strings_off_ = false;
  std::string unsafe_encoding_;  // client_encoding, when it can hide ASCII bytes in characters
  // A statement held for approval.
  bool waiting_approval_ = false;
  std::uint64_t approval_id_ = 0;
  char approval_type_ = 0;
  std::string approval_name_;  // a named Parse keeps a denial
  std::uint32_t approval_seq_ = 0;
  std::int64_t approval_since_ns_ = 0;
  std::string approval_message_;
  std::size_t approval_offset_ = 0, approval_len_ = 0;  // where the statement sits in held_
  std::uint64_t last_record_end_ = 0;                   // strict: what must be durable first
  bool holding_ = false;  // upstream-bound bytes wait in held_ (durability, approval)
  std::basic_string<std::byte> held_;
  // Masking: the caller's profile (null: values go out as they are), which RowDescription
  // describes the rows now arriving, and the masked columns resolved through the catalog (a query
  // of pgwarden's own, sent before the client's next message when due; its replies are not
  // forwarded).
  const policy::MaskProfile* mask_ = nullptr;
  std::string mask_exempt_;  // the exempt profile's name, when the caller is exempt
  std::unique_ptr<policy::ResultTracker> results_;
  std::shared_ptr<const policy::MaskedAttrs> masked_attrs_;
  std::unique_ptr<policy::MaskedAttrs> catalog_building_;
  std::string catalog_error_;
  std::string catalog_query_;  // the profile's catalog query ("" = no column rules)
  bool catalog_due_ = false;
  bool extended_open_ = false;  // extended-protocol messages sent since the last Sync
  bool catalog_pending_ = false;
  bool copy_binary_ = false;
  std::basic_string<std::byte> mask_out_;
  std::string mask_text_;
  // TLS.
  std::basic_string<std::byte> tls_plain_in_;  // decrypted bytes of the current read
  std::basic_string<std::byte> tls_records_;   // encrypted bytes of the current flush
  bool copy_fragments_ = false;  // fragments are not in a receive buffer: copy, don't reference
  bool upstream_tls_answer_ = false;         // SSLRequest sent upstream, 'S' or 'N' awaited
  bool upstream_handshake_ = false;          // TLS handshake with the upstream in progress
  const std::byte* chunk_end_ = nullptr;     // end of the chunk being framed
  const std::byte* fragment_end_ = nullptr;  // end of the startup fragment being handled
};

}  // namespace pgwarden::core
