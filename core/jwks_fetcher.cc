#include "core/jwks_fetcher.h"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/log.h"

namespace pgwarden::core {

namespace {

constexpr int kTimeoutMs = 10000;
constexpr std::size_t kMaxResponse = 1 << 20;
constexpr double kEarlyRefreshGapS = 10;

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// A connected blocking socket with send/receive timeouts, or -1 and `error`.
int connect_with_timeout(const protocol::Url& url, std::string& error) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(url.port);
  if (const int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    error = "cannot resolve " + url.host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, kTimeoutMs) == 1 ? 0 : -1;
      int so_error = rc == 0 ? 0 : ETIMEDOUT;
      socklen_t len = sizeof so_error;
      if (rc == 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
      if (so_error != 0) {
        errno = so_error;
        rc = -1;
      }
    }
    if (rc != 0) {
      error = "cannot connect to " + url.host + ":" + port + ": " + std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) return -1;
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  timeval tv{kTimeoutMs / 1000, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

// GET url; the raw response bytes, or an error.
protocol::Result<std::string> http_get(const protocol::Url& url, const std::string& ca_file) {
  auto fail = [](std::string why) { return protocol::Error{protocol::Errc::Rejected, why}; };
  std::string error;
  FdCloser sock{connect_with_timeout(url, error)};
  if (sock.fd < 0) return fail(error);
  const std::string request = protocol::http_get_request(url);
  std::string raw;
  if (!url.tls) {
    if (::send(sock.fd, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return fail(std::string("send: ") + std::strerror(errno));
    }
    char buf[16384];
    while (raw.size() <= kMaxResponse) {
      const ssize_t n = ::recv(sock.fd, buf, sizeof buf, 0);
      if (n < 0) return fail(std::string("receive: ") + std::strerror(errno));
      if (n == 0) break;
      raw.append(buf, static_cast<std::size_t>(n));
    }
    return raw;
  }
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) return fail(openssl_error());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  const int loaded = ca_file.empty()
                         ? SSL_CTX_set_default_verify_paths(ctx.get())
                         : SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
  if (loaded != 1) return fail("cannot load CA certificates: " + openssl_error());
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  if (!ssl || SSL_set_fd(ssl.get(), sock.fd) != 1) return fail(openssl_error());
  SSL_set_tlsext_host_name(ssl.get(), url.host.c_str());
  SSL_set1_host(ssl.get(), url.host.c_str());  // the certificate must name the URL's host
  if (SSL_connect(ssl.get()) != 1) {
    const long verify = SSL_get_verify_result(ssl.get());
    return fail("TLS handshake with " + url.host + " failed: " +
                (verify != X509_V_OK ? X509_verify_cert_error_string(verify) : openssl_error()));
  }
  if (SSL_write(ssl.get(), request.data(), static_cast<int>(request.size())) <= 0) {
    return fail("TLS write: " + openssl_error());
  }
  char buf[16384];
  while (raw.size() <= kMaxResponse) {
    const int n = SSL_read(ssl.get(), buf, sizeof buf);
    if (n > 0) {
      raw.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    const int err = SSL_get_error(ssl.get(), n);
    if (err == SSL_ERROR_ZERO_RETURN) break;
    // A server that closes without close_notify: the HTTP framing says whether we got it all.
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0) break;
    ERR_clear_error();
    break;
  }
  return raw;
}

}  // namespace

JwksFetcher::JwksFetcher(std::string url, std::string ca_file, double refresh_s,
                         std::shared_ptr<policy::JwksSource> source)
    : url_text_(std::move(url)),
      ca_file_(std::move(ca_file)),
      refresh_s_(refresh_s),
      source_(std::move(source)) {
  auto parsed = protocol::parse_url(url_text_);
  if (parsed) url_ = *parsed;  // validated by the flag parser
}

JwksFetcher::~JwksFetcher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string JwksFetcher::fetch_once() {
  errno = 0;
  const auto raw = http_get(url_, ca_file_);
  if (!raw) return raw.error().message;
  const auto response = protocol::parse_http_response(*raw, kMaxResponse);
  if (!response) return response.error().message;
  if (response->status != 200) return "HTTP status " + std::to_string(response->status);
  auto keys = policy::Jwks::parse(response->body);
  if (!keys) return keys.error().message;
  if ((*keys)->keys().empty()) return "the key set has no usable key";
  source_->set(*keys);
  return {};
}

void JwksFetcher::start() {
  thread_ = std::thread([this] { run(); });
}

void JwksFetcher::run() {
  using Clock = std::chrono::steady_clock;
  bool have_keys = source_->get() != nullptr;
  auto last = Clock::now();
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
    if (stop_) break;
    const double since = std::chrono::duration<double>(Clock::now() - last).count();
    // Until the first success, retry every 5 s; then on schedule, or early on an unknown kid.
    const bool due = have_keys ? since >= refresh_s_ : since >= 5;
    const bool early = since >= kEarlyRefreshGapS && source_->take_refresh_request();
    if (!due && !early) continue;
    lock.unlock();
    const std::string error = fetch_once();
    lock.lock();
    last = Clock::now();
    if (error.empty()) {
      if (!have_keys || early) PGW_INFO("jwks: keys loaded from %s", url_text_.c_str());
      have_keys = true;
    } else {
      PGW_WARN("jwks: fetching %s failed (%s); keeping the keys in force", url_text_.c_str(),
               error.c_str());
    }
  }
}

}  // namespace pgwarden::core
