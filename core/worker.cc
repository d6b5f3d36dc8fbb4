#include "core/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/log.h"
#include "core/ops.h"
#include "core/record_log.h"
#include "protocol/messages.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;

namespace {

constexpr std::int64_t kNsPerSec = 1'000'000'000;
constexpr std::int64_t kTickNs = 200'000'000;
constexpr std::int64_t kHardStopNs = 6 * kNsPerSec;  // after the grace: force-close stragglers

std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

__kernel_timespec to_timespec(double seconds) noexcept {
  __kernel_timespec ts{};
  ts.tv_sec = static_cast<long long>(seconds);
  ts.tv_nsec = static_cast<long long>((seconds - double(ts.tv_sec)) * 1e9);
  return ts;
}

}  // namespace

struct alignas(16) Worker::CancelForward {
  int fd = -1;
  std::byte packet[16]{};
  std::byte scratch[16]{};  // whatever the upstream sends before it closes (nothing, normally)
};

Worker::Worker(unsigned index, const Config& config, const Address& upstream, int listen_fd,
               Control& control, const policy::AuthConfig* auth)
    : index_(index),
      config_(config),
      upstream_(upstream),
      listen_fd_(listen_fd),
      control_(control),
      auth_(auth),
      masker_(control.mask_key),
      throttle_(config.auth_failure_limit, static_cast<std::int64_t>(config.auth_failure_window_s)),
      cancel_keys_(index, config.peer_id) {
  if (auth_ != nullptr) jwt_ = std::make_unique<policy::JwtVerifier>(auth_->jwt);
}

Worker::~Worker() {
  while (sessions_ != nullptr) {
    Session* s = sessions_;
    sessions_ = s->next_;
    s->release_resources();
    delete s;
    control_.connections.fetch_sub(1, std::memory_order_relaxed);
  }
  for (CancelForward* cf : cancel_forwards_) {
    ::close(cf->fd);
    delete cf;
  }
  buffers_.reset();
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void Worker::init() {
  // The ring is created on the thread that will drive it (required by SINGLE_ISSUER).
  io_uring_params p{};
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  p.cq_entries = 16384;
  int rc = io_uring_queue_init_params(2048, &ring_, &p);
  if (rc == -EINVAL) {  // older kernels: no DEFER_TASKRUN / SINGLE_ISSUER
    p = {};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = 16384;
    rc = io_uring_queue_init_params(2048, &ring_, &p);
  }
  if (rc < 0) throw std::runtime_error(std::string("io_uring setup failed: ") + std::strerror(-rc));
  ring_ready_ = true;
  io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
  if (probe == nullptr) throw std::runtime_error("io_uring probe failed");
  for (int op :
       {IORING_OP_RECV, IORING_OP_SENDMSG, IORING_OP_SEND, IORING_OP_ACCEPT, IORING_OP_CONNECT,
        IORING_OP_ASYNC_CANCEL, IORING_OP_TIMEOUT, IORING_OP_LINK_TIMEOUT, IORING_OP_READ}) {
    if (!io_uring_opcode_supported(probe, op)) {
      io_uring_free_probe(probe);
      throw std::runtime_error("kernel io_uring lacks opcode " + std::to_string(op) +
                               " (pgwarden needs Linux 6.0 or newer)");
    }
  }
  io_uring_free_probe(probe);
  // Saves a file-table lookup on every io_uring_enter; optional (Linux 5.18+).
  if (io_uring_register_ring_fd(&ring_) < 0) PGW_DEBUG("worker %u: ring fd not registered", index_);
  buffers_ = std::make_unique<BufferRing>(&ring_, config_.recv_buffers, config_.recv_buffer_size);
  tick_.tv_nsec = kTickNs;
  connect_timeout_ = to_timespec(config_.connect_timeout_s);
  cancel_wait_timeout_ = to_timespec(config_.connect_timeout_s > 0 ? config_.connect_timeout_s : 5);
  // Session ids: a random base per core and a counter, unique across cores and restarts.
  if (::getrandom(&session_id_base_, sizeof session_id_base_, 0) != sizeof session_id_base_) {
    session_id_base_ = static_cast<std::uint64_t>(monotonic_ns()) * 2654435761u;
  }
  session_id_base_ &= ~0xFFFFFFFFull;
  if (!config_.record_dir.empty()) {
    now_ns_ = monotonic_ns();
    record_log_ = std::make_unique<RecordLog>(*this, index_, config_, control_.record_key);
    record_log_->open();
  }
  services_.config = &config_;
  services_.core = index_;
  services_.stats = &stats_;
  services_.engine = &policy_engine_;
  services_.masker = &masker_;
  services_.catalog = &catalog_cache_;
  services_.approvals = control_.approvals;
  services_.locks = control_.locks;
  services_.recorder = record_log_.get();
  services_.now_ns = now_ns_;
  services_.policy = policy_.get();
}

io_uring_sqe* Worker::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (s == nullptr) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// The loop

void Worker::refresh_policy() noexcept {
  const std::uint64_t v = control_.policy_version.load(std::memory_order_acquire);
  if (v != policy_version_) {
    policy_ = control_.policy.load(std::memory_order_acquire);
    policy_version_ = v;
    services_.policy = policy_.get();
  }
}

void Worker::run() {
  now_ns_ = monotonic_ns();
  services_.now_ns = now_ns_;
  refresh_policy();
  arm_accept();
  arm_tick();
  arm_wake();
  while (!terminated_) {
    if (iter_statements_ != 0) {
      // From the start of the iteration that read them to their sends' submission.
      stats_.gateway_latency.observe(monotonic_ns() - now_ns_, iter_statements_);
      iter_statements_ = 0;
    }
    flush_sends();
    if (record_log_) record_log_->submit(now_ns_);
    if (buffers_->publish() != 0) rearm_starved();
    const int rc = io_uring_submit_and_wait(&ring_, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
      PGW_ERROR("worker %u: io_uring_submit_and_wait: %s", index_, std::strerror(-rc));
    }
    now_ns_ = monotonic_ns();
    services_.now_ns = now_ns_;
    refresh_policy();
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      dispatch(cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    if (draining_ && session_count_ == 0 && cancel_forwards_.empty()) terminated_ = true;
  }
  if (record_log_) {
    // Let the recorder's writes in flight complete, then seal the segment as final.
    while (!record_log_->idle()) {
      io_uring_submit_and_wait(&ring_, 1);
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_cqe* cqe = nullptr;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        const Op op = static_cast<Op>(cqe->user_data & kOpMask);
        if (op == kRecordWrite || op == kRecordSync || op == kRecordTimer) dispatch(cqe);
        ++seen;
      }
      io_uring_cq_advance(&ring_, seen);
      now_ns_ = monotonic_ns();
    }
    record_log_->close();
  }
  PGW_INFO(
      "worker %u stopped: %llu sessions accepted, %llu protocol errors, %llu upstream "
      "failures, %llu cancels forwarded",
      index_, static_cast<unsigned long long>(stats_.accepted.get()),
      static_cast<unsigned long long>(stats_.protocol_errors.get()),
      static_cast<unsigned long long>(stats_.upstream_failures.get()),
      static_cast<unsigned long long>(stats_.cancels_forwarded.get()));
}

void Worker::dispatch(io_uring_cqe* cqe) {
  const std::uint64_t ud = cqe->user_data;
  const int res = cqe->res;
  switch (static_cast<Op>(ud & kOpMask)) {
    case kIgnore:
      return;
    case kAccept:
      on_accept(res, (cqe->flags & IORING_CQE_F_MORE) != 0);
      return;
    case kTick:
      on_tick();
      return;
    case kWake:
      on_wake();
      return;
    case kClientRecv:
    case kUpstreamRecv: {
      Session* s = ptr_of<Session>(ud);
      on_recv_cqe(s, (ud & kOpMask) == kClientRecv ? Peer::Client : Peer::Upstream, cqe);
      maybe_free(s);
      return;
    }
    case kClientSend:
    case kUpstreamSend: {
      Session* s = ptr_of<Session>(ud);
      on_send_cqe(s, (ud & kOpMask) == kClientSend ? Peer::Client : Peer::Upstream, res);
      maybe_free(s);
      return;
    }
    case kConnect: {
      Session* s = ptr_of<Session>(ud);
      --s->inflight_;
      s->on_connected(res);
      maybe_free(s);
      return;
    }
    case kRecordWrite:
      record_log_->on_write(res, now_ns_);
      return;
    case kRecordSync:
      record_log_->on_sync(res, now_ns_);
      return;
    case kRecordTimer:
      record_log_->on_timer(now_ns_);
      return;
    case kCancelConnect:
      on_cancel_forward(ptr_of<CancelForward>(ud), false, res);
      return;
    case kCancelSend:
      on_cancel_forward(ptr_of<CancelForward>(ud), true, res);
      return;
    case kCancelWait:
      end_cancel_forward(ptr_of<CancelForward>(ud));
      return;
  }
}

void Worker::maybe_free(Session* s) {
  if (!s->releasable()) return;
  if (s->prev_ != nullptr)
    s->prev_->next_ = s->next_;
  else
    sessions_ = s->next_;
  if (s->next_ != nullptr) s->next_->prev_ = s->prev_;
  s->release_resources();
  delete s;
  --session_count_;
  control_.connections.fetch_sub(1, std::memory_order_relaxed);
  --stats_.sessions;
}

// ---------------------------------------------------------------------------------------------
// Receives and sends

void Worker::arm_recv(Session& s, Peer p) {
  Conn& c = s.conn(p);
  if (c.recv_armed || c.eof || c.recv_paused || c.held || c.starved || c.fd < 0 || s.closing()) {
    return;
  }
  io_uring_sqe* e = sqe();
  io_uring_prep_recv_multishot(e, c.fd, nullptr, 0, 0);
  e->flags |= IOSQE_BUFFER_SELECT;
  e->buf_group = BufferRing::kGroup;
  io_uring_sqe_set_data64(e, tag(&s, p == Peer::Client ? kClientRecv : kUpstreamRecv));
  c.recv_armed = true;
  ++s.inflight_;
}

void Worker::on_recv_cqe(Session* s, Peer p, io_uring_cqe* cqe) {
  Conn& c = s->conn(p);
  const bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  const int res = cqe->res;
  if (!more) {
    c.recv_armed = false;
    --s->inflight_;
  }
  if ((cqe->flags & IORING_CQE_F_BUFFER) != 0) {
    const auto bid = static_cast<std::uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    buffers_->ref(bid);
    if (res > 0) s->on_recv(p, {buffers_->data(bid), static_cast<std::size_t>(res)}, bid);
    buffers_->unref(bid);
  }
  if (res == 0) {
    s->on_eof(p, 0);
  } else if (res == -ENOBUFS) {
    // The core ran out of receive buffers: resume when some come back.
    if (!c.eof && !s->closing() && !c.starved) {
      c.starved = true;
      starved_.emplace_back(s, p);
      ++s->inflight_;
    }
  } else if (res < 0 && res != -ECANCELED) {
    s->on_eof(p, -res);
  } else if (!more) {
    arm_recv(*s, p);  // a multishot receive can end while data still flows; keep reading
  }
}

void Worker::rearm_starved() {
  if (starved_.empty()) return;
  auto list = std::move(starved_);
  starved_.clear();
  for (auto [s, p] : list) {
    s->conn(p).starved = false;
    --s->inflight_;
    arm_recv(*s, p);
    maybe_free(s);
  }
}

void Worker::want_send(Session& s, Peer p) {
  Conn& c = s.conn(p);
  if (c.send_wanted || c.dead) return;
  c.send_wanted = true;
  send_list_.emplace_back(&s, p);
  ++s.inflight_;  // keeps the session alive while it is on the list
}

// All sockets that got bytes during this batch of completions send once, with everything queued.
void Worker::flush_sends() {
  for (std::size_t i = 0; i < send_list_.size(); ++i) {
    auto [s, p] = send_list_[i];
    Conn& c = s->conn(p);
    c.send_wanted = false;
    --s->inflight_;
    s->seal_output(p);  // TLS: encrypt what was queued
    if (!c.send_inflight && !c.dead && !c.out.empty() && c.fd >= 0 && !s->closing()) {
      const std::size_t n = c.out.fill(c.iov, Conn::kMaxIov);
      io_uring_sqe* e = sqe();
      if (n == 1) {  // the common case: one forwarded chunk; plain send skips the msghdr import
        io_uring_prep_send(e, c.fd, c.iov[0].iov_base, c.iov[0].iov_len, MSG_NOSIGNAL);
      } else {
        c.msg = {};
        c.msg.msg_iov = c.iov;
        c.msg.msg_iovlen = n;
        io_uring_prep_sendmsg(e, c.fd, &c.msg, MSG_NOSIGNAL);
      }
      io_uring_sqe_set_data64(e, tag(s, p == Peer::Client ? kClientSend : kUpstreamSend));
      c.send_inflight = true;
      ++s->inflight_;
    }
    maybe_free(s);
  }
  send_list_.clear();
}

void Worker::on_send_cqe(Session* s, Peer p, int res) {
  Conn& c = s->conn(p);
  c.send_inflight = false;
  --s->inflight_;
  s->on_send_done(p, res);
}

void Worker::cancel_recv(Session& s, Peer p) {
  io_uring_sqe* e = sqe();
  io_uring_prep_cancel64(e, tag(&s, p == Peer::Client ? kClientRecv : kUpstreamRecv), 0);
  io_uring_sqe_set_data64(e, kIgnore);
}

void Worker::cancel_all(Session& s, Peer p) {
  io_uring_sqe* e = sqe();
  io_uring_prep_cancel_fd(e, s.conn(p).fd, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(e, kIgnore);
}

// ---------------------------------------------------------------------------------------------
// Connections

int Worker::connect_upstream(Session& s) {
  const int fd = ::socket(upstream_.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (upstream_.family() != AF_UNIX) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  s.conn(Peer::Upstream).fd = fd;
  // The connect and its timeout are linked: keep them in one submission.
  submit_connect(fd, tag(&s, kConnect), upstream_);
  ++s.inflight_;
  return 0;
}

// A connect to the upstream and its linked timeout, kept in one submission.
void Worker::submit_connect(int fd, std::uint64_t user_data, const Address& to) {
  if (io_uring_sq_space_left(&ring_) < 2) io_uring_submit(&ring_);
  io_uring_sqe* e = sqe();
  io_uring_prep_connect(e, fd, to.sa(), to.len);
  io_uring_sqe_set_data64(e, user_data);
  if (config_.connect_timeout_s > 0) {
    e->flags |= IOSQE_IO_LINK;
    io_uring_sqe* t = sqe();
    io_uring_prep_link_timeout(t, &connect_timeout_, 0);
    io_uring_sqe_set_data64(t, kIgnore);
  }
}

void Worker::arm_accept() {
  if (accept_armed_ || draining_ || listen_fd_ < 0) return;
  io_uring_sqe* e = sqe();
  io_uring_prep_multishot_accept(e, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(e, tag(this, kAccept));
  accept_armed_ = true;
}

void Worker::on_accept(int res, bool more) {
  if (!more) accept_armed_ = false;  // re-armed on the next tick
  if (res < 0) {
    if (res != -ECANCELED) PGW_WARN("worker %u: accept: %s", index_, std::strerror(-res));
    return;
  }
  if (draining_) {
    ::close(res);
    return;
  }
  auto* s = new Session(*this, res, now_ns_);
  s->next_ = sessions_;
  if (sessions_ != nullptr) sessions_->prev_ = s;
  sessions_ = s;
  ++session_count_;
  control_.connections.fetch_add(1, std::memory_order_relaxed);
  ++stats_.sessions;
  ++stats_.accepted;
  arm_recv(*s, Peer::Client);
  if (!more) arm_accept();
}

// ---------------------------------------------------------------------------------------------
// Timers, wake-ups, shutdown

void Worker::arm_tick() {
  io_uring_sqe* e = sqe();
  io_uring_prep_timeout(e, &tick_, 0, 0);
  io_uring_sqe_set_data64(e, tag(this, kTick));
}

void Worker::on_tick() {
  if (terminated_) return;
  arm_tick();
  check_deadlines();
}

void Worker::check_deadlines() {
  if (!accept_armed_ && !draining_) arm_accept();
  const bool grace_over = draining_ && now_ns_ >= grace_deadline_ns_;
  const bool hard_over = draining_ && now_ns_ >= hard_deadline_ns_;
  for (Session* s = sessions_; s != nullptr;) {
    Session* next = s->next_;
    if (hard_over) {
      s->force_close();
    } else {
      if (grace_over) s->terminate_for_shutdown();
      s->on_tick(now_ns_);
    }
    maybe_free(s);
    s = next;
  }
}

void Worker::arm_wake() {
  io_uring_sqe* e = sqe();
  io_uring_prep_read(e, mailbox_.fd(), &wake_buf_, sizeof wake_buf_, 0);
  io_uring_sqe_set_data64(e, tag(this, kWake));
}

void Worker::on_wake() {
  arm_wake();
  for (const pr::BackendKey& key : mailbox_.take_cancels()) cancel(key);
  for (const AdminQueryPtr& q : mailbox_.take_queries()) answer(*q);
  for (const AdminRecord& r : mailbox_.take_records()) {
    if (record_log_ == nullptr) continue;
    if (!record_log_->has_room()) {
      PGW_ERROR("admin action not recorded (the recording is failing): %s by %s on %s",
                r.action.c_str(), r.identity.c_str(), r.target.c_str());
      continue;
    }
    recorder::Payload& p = record_log_->payload(0);
    p.add(recorder::Field::Identity, r.identity)
        .add(recorder::Field::Client, r.client)
        .add(recorder::Field::Text, r.action)
        .add(recorder::Field::Target, r.target)
        .add(recorder::Field::Decision, r.result);
    if (!r.reason.empty()) p.add(recorder::Field::Reason, r.reason);
    record_log_->append(recorder::RecordType::Admin);
  }
  for (const ApprovalDecision& d : mailbox_.take_approvals()) {
    for (Session* s = sessions_; s != nullptr; s = s->next_) {
      if (s->id() == d.session) {
        s->on_approval(d);
        maybe_free(s);
        break;
      }
    }
  }
  const int phase = control_.phase.load(std::memory_order_acquire);
  if (phase >= Control::Draining && !draining_) begin_drain();
  if (phase >= Control::Stopping) {
    grace_deadline_ns_ = now_ns_;  // second signal: skip the grace period
    check_deadlines();
  }
}

// The admin API asks about this core's sessions (list, end one, end those of a locked name).
void Worker::answer(AdminQuery& q) {
  std::string out;
  std::size_t ended = 0;
  // KillMatching: the name, and the accounts the lock on it has learned.
  AccessLock match{q.name, 0, 0, "", "", {}};
  if (q.kind == AdminQuery::Kind::KillMatching && services_.locks != nullptr) {
    const auto locks = services_.locks->snapshot();
    for (const AccessLock& l : *locks) {
      if (Locks::names(l, q.name, {})) match.principals = l.principals;
    }
  }
  for (Session* s = sessions_; s != nullptr;) {
    Session* next = s->next_;
    if (!s->closing() && !(q.kind != AdminQuery::Kind::List && s->ended_by_admin())) {
      switch (q.kind) {
        case AdminQuery::Kind::List:
          if (!out.empty()) out += ",";
          s->describe(out, now_ns_);
          break;
        case AdminQuery::Kind::Kill:
          if (s->id() == q.session) {
            s->end_by_admin(q.message);
            ++ended;
          }
          break;
        case AdminQuery::Kind::KillMatching:
          if (Locks::names(match, s->caller().identity, s->caller().groups,
                           s->caller().principal)) {
            if (!s->caller().principal.empty()) out += "\n" + s->caller().principal;
            s->end_by_admin(q.message);
            ++ended;
          } else if (Locks::names_actor(match, s->caller().actors, s->caller().actor_groups)) {
            // An agent's lock ends the sessions it acts in, not its users' own accounts.
            s->end_by_admin(q.message);
            ++ended;
          }
          break;
      }
      maybe_free(s);
    }
    s = next;
  }
  q.reply.set_value(q.kind == AdminQuery::Kind::List ? out : std::to_string(ended) + out);
}

void Worker::begin_drain() {
  draining_ = true;
  grace_deadline_ns_ = now_ns_ + static_cast<std::int64_t>(config_.shutdown_grace_s * 1e9);
  hard_deadline_ns_ = grace_deadline_ns_ + kHardStopNs;
  // Stop accepting: leave the SO_REUSEPORT group so new connections go to no one.
  if (accept_armed_) {
    io_uring_sqe* e = sqe();
    io_uring_prep_cancel64(e, tag(this, kAccept), 0);
    io_uring_sqe_set_data64(e, kIgnore);
  }
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  PGW_DEBUG("worker %u: draining %zu sessions", index_, session_count_);
}

// ---------------------------------------------------------------------------------------------
// Cancel keys and forwarding

pr::BackendKey Worker::issue_cancel_key(pr::BackendKey upstream) {
  std::int32_t secret = 0;
  while (::getrandom(&secret, sizeof secret, 0) != sizeof secret) {
  }
  return cancel_keys_.issue(upstream, secret);
}

void Worker::release_cancel_key(pr::BackendKey gateway) noexcept {
  cancel_keys_.release(gateway);
}

// A CancelRequest read by this core: for another instance's key it goes to that peer (once:
// a request a peer forwarded is never passed on again), for ours to the core that issued it.
void Worker::route_cancel(pr::BackendKey gateway) {
  const auto route = pr::cancel_key_route(gateway.pid);
  if (!route) return;  // not ours: ignored, as PostgreSQL does
  if (route->peer != config_.peer_id) {
    if (route->forwarded || route->peer >= control_.peers.size()) return;
    const Address& peer = control_.peers[route->peer];
    if (peer.family() == 0) return;  // no such peer configured
    ++stats_.cancels_to_peers;
    forward_cancel(peer, {pr::cancel_key_mark_forwarded(gateway.pid), gateway.secret});
    return;
  }
  gateway.pid = pr::cancel_key_unmark_forwarded(gateway.pid);
  if (route->core >= control_.workers.size()) return;
  if (route->core == index_) {
    cancel(gateway);
    return;
  }
  control_.workers[route->core]->mailbox().post_cancel(gateway);
}

// A CancelRequest for one of this core's sessions: a statement it holds for approval is
// canceled here (nothing of it runs upstream); whatever runs upstream gets the cancel too.
void Worker::cancel(pr::BackendKey gateway) {
  const auto up = cancel_keys_.lookup(gateway);
  if (!up) return;
  for (Session* s = sessions_; s != nullptr; s = s->next_) {
    if (s->gateway_key() == gateway && !s->closing()) {
      s->cancel_held();
      maybe_free(s);
      break;
    }
  }
  forward_cancel(upstream_, *up);
}

void Worker::forward_cancel(const Address& to, pr::BackendKey key) {
  // Anyone may send CancelRequests, and one for a peer's key is forwarded unchecked (the peer
  // judges the secret): a flood toward a peer that is slow to answer must not eat this core's
  // file descriptors. Past the bound, cancels are dropped (and counted).
  if (cancel_forwards_.size() >= kMaxCancelForwards) {
    ++stats_.cancels_dropped;
    PGW_WARN("worker %u: %zu cancel requests are being forwarded already; dropped one", index_,
             cancel_forwards_.size());
    return;
  }
  const int fd = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  auto* cf = new CancelForward;
  cf->fd = fd;
  std::basic_string<std::byte> pkt;
  pr::append_cancel_request(pkt, key);
  std::memcpy(cf->packet, pkt.data(), sizeof cf->packet);
  cancel_forwards_.insert(cf);
  submit_connect(fd, tag(cf, kCancelConnect), to);
}

// After sending, the forward waits for the receiver (the upstream or a peer) to close the
// connection, as libpq's PQcancel does: the close says the cancel was processed, and PgBouncer
// drops a cancel whose sender hangs up before it has passed it on ("client unexpected eof").
void Worker::on_cancel_forward(CancelForward* cf, bool sent, int res) {
  if (!sent && res >= 0) {
    io_uring_sqe* e = sqe();
    io_uring_prep_send(e, cf->fd, cf->packet, sizeof cf->packet, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(e, tag(cf, kCancelSend));
    return;
  }
  if (sent && res == sizeof cf->packet) {
    ++stats_.cancels_forwarded;
    // The receive and its timeout are linked: keep them in one submission.
    if (io_uring_sq_space_left(&ring_) < 2) io_uring_submit(&ring_);
    io_uring_sqe* e = sqe();
    io_uring_prep_recv(e, cf->fd, cf->scratch, sizeof cf->scratch, 0);
    io_uring_sqe_set_data64(e, tag(cf, kCancelWait));
    e->flags |= IOSQE_IO_LINK;
    io_uring_sqe* t = sqe();
    io_uring_prep_link_timeout(t, &cancel_wait_timeout_, 0);
    io_uring_sqe_set_data64(t, kIgnore);
    return;
  }
  PGW_WARN("worker %u: could not forward a cancel request: %s", index_,
           res < 0 ? std::strerror(-res) : "short write");
  end_cancel_forward(cf);
}

// The upstream closed the connection (or sent something, failed, or the wait timed out).
void Worker::end_cancel_forward(CancelForward* cf) {
  ::close(cf->fd);
  cancel_forwards_.erase(cf);
  delete cf;
}

}  // namespace pgwarden::core
