// One client connection and its upstream connection: the transport. Sockets, TLS, framing,
// backpressure, pausing and resuming input, holding upstream-bound bytes; in the ready phase it
// feeds every message to the pipeline model once and runs the stages (core/stages/) over it:
//   client  -> framer -> (pooler) -> role guard -> policy -> masking -> approvals -> recording
//           -> (the pooler's rewrite) -> upstream
//   upstream -> framer -> model -> masking -> recording -> client
// Unchanged messages are forwarded from the receive buffer they arrived in. A Session lives on
// the core that accepted it, for life; its Worker does all I/O on its behalf and frees it only
// after the last submission completed.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/out_queue.h"
#include "core/stages/approval_stage.h"
#include "core/stages/auth_stage.h"
#include "core/stages/masking_stage.h"
#include "core/stages/policy_stage.h"
#include "core/stages/pooler_stage.h"
#include "core/stages/recording_stage.h"
#include "core/stages/role_guard_stage.h"
#include "core/tls.h"
#include "protocol/framer.h"
#include "protocol/pipeline.h"
#include "protocol/startup.h"

namespace pgwarden::core {

class Worker;

enum class Peer : std::uint8_t { Client, Upstream };

enum class SessionState : std::uint8_t {
  Startup,         // reading the startup packet (SSLRequest/GSSENCRequest answered)
  ClientAuth,      // gateway auth: the client proves its identity to pgwarden
  Connecting,      // connecting upstream
  UpstreamAuth,    // gateway auth: pgwarden logs in upstream with its own credential
  Authenticating,  // until the first ReadyForQuery (relay mode: the client's own auth exchange)
  Ready,           // steady state: the pipeline model and the stages run
  Replicating,     // a replication connection a rule allowed: relayed raw, commands recorded
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
  bool held = false;         // no reads: input paused, or upstream bytes held (strict recording)
  std::unique_ptr<TlsChannel> tls;         // set once this side speaks TLS
  std::basic_string<std::byte> plain_out;  // TLS: plaintext queued, encrypted before sending
  msghdr msg{};
  iovec iov[kMaxIov]{};
};

class alignas(16) Session final : public StageHost {
 public:
  // PostgreSQL's bound on a message before authentication completes (PG_MAX_AUTH_TOKEN_LENGTH).
  static constexpr std::uint32_t kMaxAuthMessage = 65535 + 4;
  // Buffers grown past this by one large message give their memory back afterwards.
  static constexpr std::size_t kShrinkAbove = 64u << 10;

  Session(Worker& worker, int client_fd, std::int64_t now_ns);
  ~Session() override;
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
  // An approval for this session's held statement was decided (admin endpoint).
  void on_approval(const ApprovalDecision& d) { approvals_.on_decision(d); }
  // A CancelRequest with this session's key: a statement held for approval is canceled.
  void cancel_held() { approvals_.cancel_by_client(); }
  const protocol::BackendKey& gateway_key() const noexcept { return gateway_key_; }
  std::uint64_t id() const noexcept { return session_id_; }
  // The admin API (session_admin.cc): this session as a JSON object appended to `out`, and
  // ending it with FATAL 57P01 `message` (recorded as the end reason).
  void describe(std::string& out, std::int64_t now_ns);
  void end_by_admin(const std::string& message);

  Conn& conn(Peer p) noexcept { return p == Peer::Client ? client_ : upstream_; }
  bool closing() const noexcept { return closing_; }
  // An administrator ended it (it may still be finishing its replies): not ended, or counted,
  // twice.
  bool ended_by_admin() const noexcept { return ended_by_admin_; }
  // True when the session can be freed: closing and nothing in flight.
  bool releasable() const noexcept { return closing_ && inflight_ == 0; }
  void release_resources() noexcept;  // closes sockets, returns buffers and the cancel key
  SessionState state() const noexcept { return state_; }

  // StageHost.
  protocol::PipelineModel& model() noexcept override { return model_; }
  const Caller& caller() const noexcept override { return auth_.caller(); }
  std::uint64_t session_id() const noexcept override { return session_id_; }
  protocol::Request* send_own(protocol::Bytes message, std::uint8_t owner) override;
  void send_client(protocol::Bytes bytes) override { queue_copy(Peer::Client, bytes); }
  void hold_upstream() override;
  void release_upstream() override;
  void decide_held(bool approved, std::string_view sqlstate, std::string message,
                   std::string outcome) override;
  // Sends a FATAL ErrorResponse to the client if the client stream is at a message boundary,
  // then winds the session down.
  void fail(std::string_view sqlstate, std::string_view message) override;
  // Bad input from the client: answer what was validly sent before it first, then fail.
  void fail_after_replies(std::string_view sqlstate, const std::string& message) override;

  std::uint32_t inflight_ = 0;  // submissions (and waits) the worker still owes completions for
  Session* prev_ = nullptr;     // the worker's intrusive list of live sessions
  Session* next_ = nullptr;

 private:
  friend class AuthStage;
  // Why frontend input waits (unprocessed bytes kept in pending_in_).
  enum class Pause : std::uint8_t {
    None,
    Barrier,  // a COPY FROM STDIN may have started: until the server's replies say
    Settled,  // a stage deferred a message until nothing is in flight
    Held,     // a message waits for an approver
    Full,     // too many requests in flight
  };

  // Transport (session.cc).
  void forward(Peer to, const protocol::Fragment& f, const protocol::Framer& from);
  void queue_copy(Peer to, protocol::Bytes bytes);
  void forward_whole(Peer to, const protocol::Fragment& f, protocol::Bytes whole,
                     const protocol::Framer& from);
  void check_backpressure(Peer to);
  void on_tls(Peer from, protocol::Bytes encrypted);
  void feed_frontend(protocol::Bytes plain);
  void feed_backend(protocol::Bytes plain);
  void finish();
  void close();
  void maybe_close_after_flush();
  void set_client_held();

  // Startup (session_startup.cc).
  protocol::Next on_frontend(const protocol::Fragment& f);
  protocol::Next on_backend(const protocol::Fragment& f);
  protocol::Next on_startup_packet(protocol::Bytes packet);
  protocol::Next on_backend_key(const protocol::Fragment& f);
  protocol::Bytes backend_whole(const protocol::Fragment& f);
  void on_upstream_tls_answer(protocol::Bytes chunk);
  void send_startup_upstream();
  void connect_upstream();
  void on_ready();
  void start_recording();
  void record_end();
  void link_stages();

  // An internal (MCP endpoint) session passes to the endpoint's next caller (session_handover.cc).
  void hand_over(const protocol::FrontendView& v, std::string_view login);
  // Replies to pgwarden's own reset of a pooled session: dropped (a failure ends the session).
  protocol::Next on_reset_reply(const BackendMessage& m);
  void reset_upstream(bool discard);

  // The ready phase (session_ready.cc).
  protocol::Next on_ready_frontend(const protocol::Fragment& f);
  protocol::Next on_replication_frontend(const protocol::Fragment& f);
  protocol::Next on_frontend_message(const protocol::Fragment& f, protocol::Bytes whole);
  protocol::Next on_ready_backend(const protocol::Fragment& f);
  bool backend_read_whole(char type);
  protocol::Request* refuse(const protocol::FrontendView& v, std::string_view sqlstate,
                            const std::string& message);
  protocol::Request* send_upstream(protocol::Bytes bytes, const protocol::FrontendView& v,
                                   protocol::Origin origin, std::uint8_t owner);
  void retire();
  void note_sent(protocol::Request* r);
  void note_completed(const protocol::Request& r);
  void count_decision(const FrontendMessage& m);
  void answer_locally(protocol::Request& r);
  // A local answer's tag_text: this prefix and a command tag (else a SQLSTATE and a message).
  static constexpr std::string_view kLocalSuccess = "\x01OK:";
  void on_token_setting(const protocol::FrontendView& v, std::string_view token);
  void diverged(char type, const char* why);
  void flush_upstream();
  protocol::Next pause_input(Pause why, protocol::Bytes keep, const std::byte* rest);
  void maybe_resume();
  bool pause_over() const;
  void after_replies();

  Worker& w_;
  Conn client_;
  Conn upstream_;
  protocol::Framer fe_;
  protocol::Framer be_;
  protocol::Assembler fe_msg_;  // frontend messages read whole
  protocol::Assembler be_msg_;  // backend messages read whole
  SessionState state_ = SessionState::Startup;
  bool finishing_ = false;
  bool closing_ = false;
  bool waiting_for_client_ = false;  // everything answered: idle-timeout applies
  std::string deferred_error_;       // a client protocol violation waiting for the replies due
  std::string deferred_sqlstate_;
  std::uint16_t cur_bid_ = 0;     // receive buffer of the chunk being handled
  std::int64_t deadline_ns_ = 0;  // startup or finish deadline; 0 = none
  std::int64_t last_activity_ns_ = 0;
  std::int64_t started_ns_ = 0;
  std::string last_statement_;  // the last Query or Parse text (first 512 bytes), for the admin API
  protocol::BackendKey gateway_key_{};
  std::basic_string<std::byte> startup_packet_;  // what goes upstream once connected
  std::uint64_t session_id_ = 0;
  std::string end_reason_;
  // The pipeline model and the stages.
  protocol::PipelineModel model_;
  AuthStage auth_;
  RoleGuardStage role_guard_;
  PolicyStage policy_;
  MaskingStage masking_;
  ApprovalStage approvals_;
  PoolerStage pooler_;
  bool pooled_ = false;  // --upstream-pooler transaction: the pooler stage rewrites statements
  bool ended_by_admin_ = false;
  std::unique_ptr<RecordingStage> recording_;  // null: recording off
  // The stages that act under the policy in force, per hook, in chain order (pooler, role guard,
  // policy, masking, approvals, recording): a stage with nothing to do is left out, so a session
  // without policy or recording pays for none of them. Rebuilt whenever the policy in force
  // changes.
  // front_gated_ is the frontend chain while a stage gates input (Stage::gates_input).
  using Chain = StageChain;
  Chain front_, front_gated_, done_, retired_, back_, all_;
  std::uint64_t chains_for_ = ~std::uint64_t{0};  // the policy id they were built for (0: none)
  bool masking_engaged_ = false;                  // masking is in the chains
  bool record_rows_ = false;                      // the recording keeps rows
  bool be_read_whole_ = false;                    // the backend message in progress is read whole
  void refresh_chains() noexcept;                 // (session_ready.cc)
  void build_chains() noexcept;
  std::string standin_portal_;  // a portal name nobody else can know: executing it fails
  std::basic_string<std::byte> refusal_out_;
  // Input paused: client bytes not processed yet, and the message held for an approver.
  Pause pause_ = Pause::None;
  std::basic_string<std::byte> pending_in_;
  std::basic_string<std::byte> resume_buf_;
  std::basic_string<std::byte> held_msg_;
  // Upstream-bound bytes held until the recording stage releases them (strict recording).
  bool holding_upstream_ = false;
  std::basic_string<std::byte> held_;
  // For the latency histograms: statements committed while upstream is held go at the release
  // of their hold (generation hold_gen_; a request keeps -generation in sent_ns).
  static constexpr std::uint64_t kReleases = 8;
  std::uint64_t hold_gen_ = 0;
  std::int64_t hold_since_ns_ = 0;
  std::uint32_t held_statements_ = 0;
  std::int64_t released_ns_[kReleases] = {};
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
