// A worker thread: one pinned core, one io_uring ring, one provided-buffer ring, one SO_REUSEPORT
// listener, and the sessions it accepted, for life. Everything here is owned by the worker's
// thread; other threads only reach it through its Mailbox and the read-only Control.
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/address.h"
#include "core/buffer_ring.h"
#include "core/flags.h"
#include "core/locks.h"
#include "core/mailbox.h"
#include "core/metrics.h"
#include "core/services.h"
#include "core/session.h"
#include "core/tls.h"
#include "policy/auth_throttle.h"
#include "policy/client_auth.h"
#include "policy/rules.h"
#include "protocol/cancel_keys.h"

namespace pgwarden::core {

class Worker;
class RecordLog;

// Process-wide control state written by the main thread; workers read it after a wake-up.
struct Control {
  enum Phase : int { Running = 0, Draining = 1, Stopping = 2 };
  std::atomic<int> phase{Running};
  std::vector<Worker*> workers;  // fixed before any worker runs
  TlsContextHolder tls;          // empty when TLS is not configured
  // pgwarden's own TLS to the upstream (--upstream-tls); null when disabled.
  std::shared_ptr<const TlsContext> upstream_tls;
  bool upstream_tls_required = false;    // require, verify-ca, verify-full
  std::string upstream_tls_verify_name;  // verify-full: the name the certificate must carry
  std::string upstream_tls_sni;
  bool plaintext_tokens_ok = false;  // loopback listener and --allow-plaintext-auth
  std::string record_key;            // --record-key-file's contents (recording on)
  std::string mask_key;              // --mask-key-file's contents, or random
  // The statement policy: swapped whole on SIGHUP; workers notice the version change.
  std::atomic<std::shared_ptr<const policy::Policy>> policy;
  std::atomic<std::uint64_t> policy_version{0};
  // Held statements (require_approval) when the admin endpoint is on; null otherwise.
  Approvals* approvals = nullptr;
  // Identities and groups locked out by an administrator (read at each login).
  Locks* locks = nullptr;
  // The other instances' SQL listeners by --peer id (0..31; an unset one has family 0).
  std::vector<Address> peers;
  // Client connections open on all workers (--max-connections).
  std::atomic<unsigned> connections{0};
};

// Counters a worker keeps for itself: only it writes them (no read-modify-write instruction on
// the data path); the admin thread reads them for /metrics and the stop log prints some.
struct WorkerStats {
  Counter accepted;
  Counter sessions;  // open now
  Counter protocol_errors;
  Counter upstream_failures;
  Counter cancels_forwarded;
  Counter cancels_to_peers;  // CancelRequests for another instance's key, passed on to it
  Counter cancels_dropped;   // not forwarded: kMaxCancelForwards were in flight
  Counter auth_failures;
  Counter statements;         // Query, Parse and FunctionCall messages from clients
  Counter refused_policy;     // refused by the statement policy (deny or hold)
  Counter refused_recording;  // refused because they could not be recorded
  Counter recording_failed;   // 1 while this core's recording fails (gauge)
  Counter record_bytes;       // written to segment files
  Counter record_syncs;       // durable writes (RWF_DSYNC) and fdatasyncs of segment files
  Counter masked;             // DataRow, CopyData, error and notice messages masking changed
  Counter model_divergences;  // sessions ended: a reply the pipeline model did not predict
  Counter upstream_up;        // the last upstream connection attempt: 1 succeeded, 0 failed
  Counter upstream_tried;     // 1 once there was an attempt (before it, upstream_up says nothing)
  // Judged statements (Query, Parse, Bind) by the policy's verdict, and held ones by outcome.
  Counter decided_allow, decided_deny, decided_hold;
  Counter approvals_approved, approvals_refused, approvals_canceled;
  // Query and Parse messages the policy classified, per class (a statement may have several).
  std::array<Counter, static_cast<std::size_t>(policy::StatementClass::kCount)> classes{};
  // Latencies: what the gateway adds to a statement before it goes upstream; a statement's time
  // upstream, from going there to its last reply; a held statement's wait for its decision; a
  // recording write (with its sync) from submission to completion.
  Histogram gateway_latency{kLatencyBounds};
  Histogram upstream_latency{kLatencyBounds};
  Histogram approval_wait{kWaitBounds};
  Histogram record_flush{kLatencyBounds};
};

// Cancel requests one core forwards at once (each holds a socket until the receiver closes it).
inline constexpr std::size_t kMaxCancelForwards = 1024;

class Worker {
 public:
  // `auth` is null in relay mode (clients authenticate to PostgreSQL themselves).
  Worker(unsigned index, const Config& config, const Address& upstream, int listen_fd,
         Control& control, const policy::AuthConfig* auth);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Sets up the ring (on the calling thread, which then owns it). Throws on failure.
  void init();
  // Runs the loop until shutdown completes.
  void run();
  Mailbox& mailbox() noexcept { return mailbox_; }
  unsigned index() const noexcept { return index_; }
  const WorkerStats& stats() const noexcept { return stats_; }

  // ---- services for sessions (worker thread only) ----
  const Config& config() const noexcept { return config_; }
  const Address& upstream() const noexcept { return upstream_; }
  const policy::AuthConfig* auth() const noexcept { return auth_; }
  std::shared_ptr<const TlsContext> tls_context() const { return control_.tls.get(); }
  bool plaintext_tokens_ok() const noexcept { return control_.plaintext_tokens_ok; }
  const std::shared_ptr<const TlsContext>& upstream_tls_context() const noexcept {
    return control_.upstream_tls;
  }
  bool upstream_tls_required() const noexcept { return control_.upstream_tls_required; }
  const std::string& upstream_tls_verify_name() const noexcept {
    return control_.upstream_tls_verify_name;
  }
  const std::string& upstream_tls_sni() const noexcept { return control_.upstream_tls_sni; }
  policy::JwtVerifier& jwt_verifier() noexcept { return *jwt_; }
  // The statement policy in force (null: none). A reload is picked up between loop iterations
  // only, so a policy (and the rules and profiles sessions point into) stays alive for the whole
  // handling of an event; sessions notice the new one by its id.
  const policy::Policy* policy() noexcept { return policy_.get(); }
  policy::PolicyEngine& policy_engine() noexcept { return policy_engine_; }
  policy::Masker& masker() noexcept { return masker_; }
  const policy::Masker& masker_view() const noexcept { return masker_; }
  // What the stages of this core's sessions use (refreshed between loop iterations).
  CoreServices& services() noexcept { return services_; }
  // More client connections are open than --max-connections allows (0: no limit).
  bool too_many_connections() const noexcept {
    return config_.max_connections != 0 &&
           control_.connections.load(std::memory_order_relaxed) > config_.max_connections;
  }
  Approvals* approvals() noexcept { return control_.approvals; }
  policy::AuthThrottle& auth_throttle() noexcept { return throttle_; }
  BufferRing& buffers() noexcept { return *buffers_; }
  std::int64_t now_ns() const noexcept { return now_ns_; }
  WorkerStats& mutable_stats() noexcept { return stats_; }
  // A client statement went upstream in this loop iteration (its gateway latency is observed
  // when the iteration's sends are submitted).
  void note_forwarded_statement() noexcept { ++iter_statements_; }
  void arm_recv(Session& s, Peer p);
  void want_send(Session& s, Peer p);
  // Stops a multishot receive (backpressure, winding down).
  void cancel_recv(Session& s, Peer p);
  // Cancels every submission on the socket (closing).
  void cancel_all(Session& s, Peer p);
  // Starts connecting the session's upstream socket; 0 or -errno.
  int connect_upstream(Session& s);
  // Issues the key this core hands a client in place of the upstream's BackendKeyData.
  protocol::BackendKey issue_cancel_key(protocol::BackendKey upstream);
  void release_cancel_key(protocol::BackendKey gateway) noexcept;
  // Routes a CancelRequest read by this core to the core that issued the key.
  void route_cancel(protocol::BackendKey gateway);
  io_uring_sqe* get_sqe() { return sqe(); }
  RecordLog* record_log() noexcept { return record_log_.get(); }
  std::uint64_t new_session_id() noexcept { return session_id_base_ + ++session_counter_; }

 private:
  struct CancelForward;
  void dispatch(io_uring_cqe* cqe);
  void on_recv_cqe(Session* s, Peer p, io_uring_cqe* cqe);
  void on_send_cqe(Session* s, Peer p, int res);
  void on_accept(int res, bool more);
  void on_tick();
  void refresh_policy() noexcept;
  void check_deadlines();
  void on_wake();
  void on_cancel_forward(CancelForward* cf, bool connected, int res);
  void end_cancel_forward(CancelForward* cf);
  // Sends a CancelRequest with `key` to `to` (the upstream, or a peer instance).
  void forward_cancel(const Address& to, protocol::BackendKey key);
  void submit_connect(int fd, std::uint64_t user_data, const Address& to);
  void arm_accept();
  void arm_tick();
  void arm_wake();
  void flush_sends();
  void rearm_starved();
  void maybe_free(Session* s);
  void begin_drain();
  void cancel(protocol::BackendKey gateway);

 public:
  // Cancels what the session with this key runs upstream (an administrator ends it).
  void cancel_upstream(protocol::BackendKey gateway) {
    if (const auto up = cancel_keys_.lookup(gateway)) forward_cancel(upstream_, *up);
  }

 private:
  void answer(AdminQuery& q);
  io_uring_sqe* sqe();

  unsigned index_;
  const Config& config_;
  const Address& upstream_;
  int listen_fd_;
  Control& control_;
  const policy::AuthConfig* auth_;
  std::unique_ptr<policy::JwtVerifier> jwt_;  // this core's verifier (its own JSON parser)
  std::shared_ptr<const policy::Policy> policy_;
  std::uint64_t policy_version_ = 0;
  policy::PolicyEngine policy_engine_;
  policy::Masker masker_;
  CatalogCache catalog_cache_;
  CoreServices services_;
  policy::AuthThrottle throttle_;
  io_uring ring_{};
  bool ring_ready_ = false;
  std::unique_ptr<BufferRing> buffers_;
  std::unique_ptr<RecordLog> record_log_;  // null: recording off
  std::uint64_t session_id_base_ = 0;
  std::uint64_t session_counter_ = 0;
  Mailbox mailbox_;
  protocol::CancelKeyTable cancel_keys_;
  WorkerStats stats_;

  Session* sessions_ = nullptr;  // intrusive list head
  std::size_t session_count_ = 0;
  std::vector<std::pair<Session*, Peer>> send_list_;
  std::vector<std::pair<Session*, Peer>> starved_;
  std::unordered_set<CancelForward*> cancel_forwards_;
  std::int64_t now_ns_ = 0;
  std::uint32_t iter_statements_ = 0;
  std::int64_t grace_deadline_ns_ = 0;
  std::int64_t hard_deadline_ns_ = 0;
  bool draining_ = false;
  bool terminated_ = false;
  bool accept_armed_ = false;
  std::uint64_t wake_buf_ = 0;
  __kernel_timespec tick_{};
  __kernel_timespec connect_timeout_{};
  __kernel_timespec cancel_wait_timeout_{};  // how long a forwarded cancel waits for the close
};

}  // namespace pgwarden::core
