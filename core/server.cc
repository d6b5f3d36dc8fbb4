#include "core/server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/admin.h"
#include "core/auth_loader.h"
#include "core/http_client.h"
#include "core/jwks_fetcher.h"
#include "core/log.h"
#include "core/mcp.h"
#include "core/notifier.h"
#include "core/worker.h"

namespace pgwarden::core {
namespace {

// 32 random bytes: the masking key when --mask-key-file is not given.
std::string random_key() {
  std::string key(32, '\0');
  std::size_t got = 0;
  while (got < key.size()) {
    const ssize_t n = ::getrandom(key.data() + got, key.size() - got, 0);
    if (n > 0) got += static_cast<std::size_t>(n);
  }
  return key;
}

// One listener per worker on the same address; the kernel spreads connections across them.
// With port 0 the first socket picks the port and the others join it.
std::vector<int> open_listeners(const Address& where, unsigned count, std::string& bound) {
  std::vector<int> fds;
  sockaddr_storage addr = where.storage;
  for (unsigned i = 0; i < count; ++i) {
    const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // inherited by accepted sockets
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), where.len) != 0) {
      const int err = errno;
      ::close(fd);
      for (int f : fds) ::close(f);
      throw std::runtime_error("cannot listen on " + where.text + ": " + std::strerror(err));
    }
    if (::listen(fd, 4096) != 0)
      throw std::runtime_error(std::string("listen: ") + std::strerror(errno));
    if (i == 0) {
      socklen_t len = sizeof addr;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
      bound = format_address(reinterpret_cast<sockaddr*>(&addr), len);
    }
    fds.push_back(fd);
  }
  return fds;
}

std::vector<int> usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
  }
  return cpus;
}

void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

// The admin API's settings; throws when it would listen beyond loopback without TLS (bearer
// tokens travel) or a file cannot be read.
static AdminOptions admin_options(const Config& config, std::shared_ptr<policy::JwksSource> jwks,
                                  const std::function<std::string(const char*)>& reload) {
  const Address where = resolve_address(config.admin_listen);
  AdminOptions o;
  if (!config.admin_tls_cert_file.empty()) {
    o.tls = TlsContext::load(config.admin_tls_cert_file, config.admin_tls_key_file);
  } else if (where.family() == AF_UNIX || !is_loopback(where)) {
    throw std::runtime_error(
        "--admin-listen must be a loopback HOST:PORT unless --admin-tls-cert/--admin-tls-key "
        "are set (bearer tokens travel on it)");
  }
  o.reload = [reload] { return reload("admin /api/v1/reload"); };
  o.jwks = std::move(jwks);
  o.jwt.issuers = config.oidc_issuers;
  o.jwt.audiences = config.admin_audiences.empty() ? config.oidc_audiences : config.admin_audiences;
  o.jwt.identity_claim = config.identity_claim;
  o.jwt.groups_claim = config.groups_claim;
  o.jwt.clock_skew_s = static_cast<std::int64_t>(config.clock_skew_s);
  if (!config.metrics_token_file.empty()) {
    o.metrics_token = load_key(config.metrics_token_file, "the metrics scrape token");
  }
  o.hosts = config.admin_hosts;
  o.max_connections = config.admin_max_connections;
  return o;
}

// The MCP endpoint: its tool calls log in to pgwarden's own listener (`bound`; a wildcard
// address is reached on loopback).
static std::shared_ptr<McpServer> mcp_server(const Config& config, Control& control,
                                             const std::shared_ptr<const policy::AuthConfig>& auth,
                                             std::shared_ptr<policy::JwksSource> jwks,
                                             const std::string& bound) {
  McpOptions o;
  o.url = config.mcp_url;
  o.jwks = std::move(jwks);
  o.jwt.issuers = config.oidc_issuers;
  o.jwt.identity_claim = config.identity_claim;
  o.jwt.groups_claim = config.groups_claim;
  o.jwt.clock_skew_s = static_cast<std::int64_t>(config.clock_skew_s);
  o.logins = auth->internal;
  o.auth = auth.get();
  const std::size_t colon = bound.rfind(':');
  std::string host = bound.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  o.gateway_host = host;
  o.gateway_port = std::stoi(bound.substr(colon + 1));
  o.max_sessions = config.mcp_max_sessions;
  o.pool_per_role = config.mcp_pool;
  o.pool_idle_ms = static_cast<std::int64_t>(config.mcp_pool_idle_s * 1000);
  o.max_calls = std::max(1u, config.admin_max_connections / 2);
  o.call_timeout_s = static_cast<int>(config.mcp_call_timeout_s);
  return std::make_shared<McpServer>(control, std::move(o));
}

int run_server(const Config& config) {
  const Address listen = resolve_address(config.listen);
  if (listen.family() == AF_UNIX) throw std::runtime_error("--listen must be HOST:PORT");
  const Address upstream = resolve_address(config.upstream);
  std::shared_ptr<const policy::AuthConfig> auth;
  if (config.gateway_auth()) auth = load_auth_config(config, listen);
  const std::vector<int> cpus = usable_cpus();
  // By default half the usable cores (at least one): the gateway usually shares its host with
  // PostgreSQL or the clients, and each extra worker costs wake-ups (README, "Tuning threads").
  const unsigned threads = config.threads != 0 ? config.threads
                           : cpus.size() < 2   ? 1u
                                               : static_cast<unsigned>(cpus.size() / 2);
  if (threads > protocol::kMaxCancelCores) throw std::runtime_error("--threads: at most 256");
  raise_fd_limit();
  http_client_init();  // libcurl's global state, before any thread that uses it

  // Signals go to the main thread only: block them before any worker starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // A file-size limit makes a segment write fail (EFBIG, refused like a full disk), not kill us.
  ::signal(SIGXFSZ, SIG_IGN);
  // The identity provider's keys verify SQL callers' tokens and the admin API's.
  const std::shared_ptr<policy::JwksSource> jwks = auth ? auth->jwks : load_jwks(config);
  std::unique_ptr<JwksFetcher> jwks_fetcher;
  if (jwks && !config.jwks_url.empty()) {
    jwks_fetcher = std::make_unique<JwksFetcher>(config.jwks_url, config.jwks_ca_file,
                                                 config.jwks_refresh_s, jwks);
    const std::string error = jwks_fetcher->fetch_once();
    if (error.empty()) {
      PGW_INFO("jwks: keys loaded from %s", url_for_log(config.jwks_url, true).c_str());
    } else {
      // Break-glass static users must still work while the identity provider is down.
      PGW_ERROR("jwks: fetching %s failed (%s); token logins fail until a retry succeeds",
                url_for_log(config.jwks_url, true).c_str(), error.c_str());
    }
    jwks_fetcher->start();
  }

  std::string bound;
  const std::vector<int> fds = open_listeners(listen, threads, bound);
  Control control;
  control.peers.resize(protocol::kMaxCancelPeer + 1);
  for (const std::string& spec : config.peers) {
    const PeerSpec peer = parse_peer(spec);
    if (peer.id == config.peer_id) continue;  // the same list may be given to every instance
    control.peers[peer.id] = resolve_address(peer.address);
    if (control.peers[peer.id].family() == AF_UNIX) throw std::runtime_error("--peer: HOST:PORT");
  }
  if (config.peer_id != 0) {
    PGW_INFO("peering: instance %u, %zu peers", config.peer_id, config.peers.size());
  }
  // Holding statements for approval needs somewhere to approve them: the admin endpoint.
  Approvals approvals;
  approvals.set_workers(&control.workers);
  std::unique_ptr<Notifier> notifier;
  if (!config.approval_webhooks.empty()) {
    NotifierOptions n;
    n.urls = config.approval_webhooks;
    n.secret = load_key(config.approval_webhook_secret_file, "the approval webhook key");
    n.ca_file = config.approval_webhook_ca_file;
    notifier = std::make_unique<Notifier>(std::move(n));
    approvals.set_notifier(notifier.get());
  }
  Locks locks;
  if (!config.admin_listen.empty()) {
    control.approvals = &approvals;
    control.locks = &locks;
  }
  if (!config.tls_cert_file.empty()) {
    control.tls.set(TlsContext::load(config.tls_cert_file, config.tls_key_file));
    PGW_INFO("TLS: %s; TLS runs in user space (OpenSSL memory BIOs on the io_uring path)",
             kernel_tls_available() ? "this kernel offers kernel TLS (not used yet)"
                                    : "no kernel TLS on this kernel");
  }
  control.plaintext_tokens_ok = plaintext_tokens_ok(config, listen);
  if (!config.policy_file.empty()) {
    control.policy.store(load_policy(config.policy_file));
    control.policy_version.store(1);
  }
  if (!config.mask_key_file.empty()) {
    control.mask_key = load_key(config.mask_key_file, "the masking key");
  } else {
    control.mask_key = random_key();
    const auto pol = control.policy.load();
    if (pol != nullptr && !pol->masking().empty()) {
      PGW_WARN(
          "masking: no --mask-key-file; \"hash\" pseudonyms use a random key and change "
          "when pgwarden restarts");
    }
  }
  if (!config.record_dir.empty()) {
    control.record_key = load_key(config.record_key_file, "the recording seal key");
    if (::mkdir(config.record_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      throw std::runtime_error("cannot create --record-dir " + config.record_dir + ": " +
                               std::strerror(errno));
    }
  }
  if (config.upstream_tls != "disable" && upstream.family() != AF_UNIX) {
    const bool verify = config.upstream_tls == "verify-ca" || config.upstream_tls == "verify-full";
    control.upstream_tls = TlsContext::client(verify, config.upstream_tls_ca_file);
    control.upstream_tls_required = config.upstream_tls != "prefer";
    std::string host = config.upstream_tls_name;
    if (host.empty()) {
      host = config.upstream.substr(0, config.upstream.rfind(':'));
      if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    }
    if (config.upstream_tls == "verify-full") control.upstream_tls_verify_name = host;
    // SNI carries DNS names only.
    if (host.find_first_not_of("0123456789.") != std::string::npos &&
        host.find(':') == std::string::npos) {
      control.upstream_tls_sni = host;
    }
  }
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < threads; ++i) {
    workers.push_back(std::make_unique<Worker>(i, config, upstream, fds[i], control, auth.get()));
    control.workers.push_back(workers.back().get());
  }

  std::vector<std::thread> pool;
  std::vector<std::promise<std::string>> ready(threads);
  for (unsigned i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      Worker& w = *workers[i];
      set_log_core(static_cast<int>(i));
      if (config.pin_threads && !cpus.empty()) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpus[i % cpus.size()], &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
      }
      try {
        w.init();
      } catch (const std::exception& e) {
        ready[i].set_value(e.what());
        return;
      }
      ready[i].set_value("");
      w.run();
    });
  }
  std::string failure;
  for (auto& r : ready) {
    std::string err = r.get_future().get();
    if (!err.empty() && failure.empty()) failure = err;
  }
  if (!failure.empty()) {
    PGW_ERROR("cannot start: %s", failure.c_str());
    control.phase.store(Control::Stopping, std::memory_order_release);
    for (auto& w : workers) w->mailbox().wake();
    for (auto& t : pool) t.join();
    return 1;
  }
  // Statements judged from now on use the new rules; a bad file keeps the old ones.
  std::mutex reload_mu;  // SIGHUP and the admin endpoint may reload at once
  auto reload_policy = [&](const char* by) -> std::string {
    if (config.policy_file.empty()) return "no --policy file is configured";
    std::lock_guard lock(reload_mu);
    try {
      control.policy.store(load_policy(config.policy_file));
      control.policy_version.fetch_add(1, std::memory_order_acq_rel);
      PGW_INFO("%s: policy reloaded from %s", by, config.policy_file.c_str());
      return {};
    } catch (const std::exception& e) {
      PGW_ERROR("%s: keeping the old policy: %s", by, e.what());
      return e.what();
    }
  };
  std::unique_ptr<AdminServer> admin;
  if (!config.admin_listen.empty()) {
    try {
      AdminOptions options = admin_options(config, jwks, reload_policy);
      if (!config.mcp_url.empty()) options.mcp = mcp_server(config, control, auth, jwks, bound);
      admin = std::make_unique<AdminServer>(resolve_address(config.admin_listen), control,
                                            std::move(options));
    } catch (const std::exception& e) {
      PGW_ERROR("cannot start: %s", e.what());
      control.phase.store(Control::Stopping, std::memory_order_release);
      for (auto& w : workers) w->mailbox().wake();
      for (auto& t : pool) t.join();
      return 1;
    }
    PGW_INFO("admin endpoint on %s (%s; /healthz /readyz /metrics /api/v1/...)",
             admin->bound().c_str(), config.admin_tls_cert_file.empty() ? "http" : "https");
  }
  PGW_INFO("pgwarden listening on %s, upstream %s, %u worker threads, %s", bound.c_str(),
           upstream.text.c_str(), threads,
           auth ? "gateway authentication (clients hold no database credential)"
                : "relaying client authentication to the upstream");

  int signals_seen = 0;
  std::thread waiter;  // joins the workers so the main thread can keep taking signals
  std::atomic<bool> all_done{false};
  waiter = std::thread([&] {
    for (auto& t : pool) t.join();
    all_done.store(true);
    ::kill(::getpid(), SIGTERM);  // unblocks sigwait below
  });
  while (true) {
    int sig = 0;
    if (sigwait(&sigs, &sig) != 0) continue;
    if (all_done.load()) break;
    if (sig == SIGHUP) {
      if (!config.policy_file.empty()) reload_policy("SIGHUP");
      // New sessions pick up the new certificate; running sessions keep theirs.
      if (!config.tls_cert_file.empty()) {
        try {
          control.tls.set(TlsContext::load(config.tls_cert_file, config.tls_key_file));
          PGW_INFO("SIGHUP: TLS certificate reloaded from %s", config.tls_cert_file.c_str());
        } catch (const std::exception& e) {
          PGW_ERROR("SIGHUP: keeping the old TLS certificate: %s", e.what());
        }
      }
      continue;
    }
    ++signals_seen;
    const int phase = signals_seen == 1 ? Control::Draining : Control::Stopping;
    PGW_INFO("received %s: %s", strsignal(sig),
             phase == Control::Draining ? "draining sessions (signal again to stop at once)"
                                        : "closing all sessions now");
    control.phase.store(phase, std::memory_order_release);
    for (auto& w : workers) w->mailbox().wake();
  }
  waiter.join();
  PGW_INFO("pgwarden stopped");
  return 0;
}

}  // namespace pgwarden::core
