#include "core/admin_http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <system_error>
#include <thread>

#include "core/tls.h"

namespace pgwarden::core {

namespace {

std::int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t ns_of(double seconds) {
  return static_cast<std::int64_t>(seconds * 1e9);
}

// One thread per connection: a connection never waits for another to finish. The number of
// connections is bounded in process_and_close_socket, which answers the excess at once.
class ConnectionThreads final : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard lock(mu_);
      ++running_;
    }
    auto run = [this](std::function<void()> job) {
      job();
      std::lock_guard lock(mu_);
      --running_;
      done_.notify_all();
    };
    try {
      std::thread(run, fn).detach();
    } catch (const std::system_error&) {
      run(std::move(fn));  // no thread to be had: served here, the accept loop waits meanwhile
    }
  }
  void shutdown() override {
    std::unique_lock lock(mu_);
    done_.wait(lock, [this] { return running_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  unsigned running_ = 0;
};

bool health_probe(std::string_view line) {
  for (std::string_view p : {"GET /healthz", "GET /readyz"}) {
    if (line.substr(0, p.size()) == p &&
        (line.size() == p.size() || line[p.size()] == ' ' || line[p.size()] == '?')) {
      return true;
    }
  }
  return false;
}

// The request line and header lines of a request, byte by byte as httplib reads them (it reads
// a request's head one byte at a time, its body by length): httplib skips a header line it
// cannot parse and goes on, so a Content-Length or Transfer-Encoding that a proxy in front reads
// could go unseen here and the body run as a request. Refused instead, as RFC 9112 asks: a bare
// CR or LF, a line folded onto the one before, a field line without a name or a colon or with
// white space before it, a control byte. And a Content-Length of anything but digits: httplib
// percent-decodes header values ("%35" would be 5 here and nothing to a proxy).
class HeaderCheck {
 public:
  void reset() { *this = HeaderCheck{}; }
  bool done() const { return done_; }
  // False when `c` makes the head malformed.
  bool take(char c) {
    if (cr_) {
      cr_ = false;
      if (c != '\n') return false;
      if (len_ == 0) {
        done_ = lines_ > 0;
        return done_;  // an empty line ends the head (and cannot come first)
      }
      if (lines_ > 0 && !colon_) return false;
      ++lines_;
      len_ = 0;
      colon_ = length_ = false;
      name_.clear();
      return true;
    }
    if (c == '\r') {
      cr_ = true;
      return true;
    }
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;  // a bare LF among them
    if (lines_ > 0 && !colon_) {
      if ((c == ' ' || c == '\t') && len_ == 0) return false;  // obs-fold
      if (c == ':') {
        if (len_ == 0 || last_ == ' ' || last_ == '\t') return false;
        colon_ = true;
        length_ = name_ == "content-length";
      } else if (name_.size() < 15) {  // within the string's own buffer: no allocation
        name_ += static_cast<char>(std::tolower(u));
      }
    } else if (length_ && (c < '0' || c > '9') && c != ' ' && c != '\t') {
      return false;
    }
    last_ = c;
    ++len_;
    return true;
  }

 private:
  std::size_t lines_ = 0, len_ = 0;  // lines ended (the request line first); bytes of this one
  char last_ = 0;
  std::string name_;  // of this field line, lower case, its first 15 bytes
  bool cr_ = false, colon_ = false, done_ = false, length_ = false;
};

// A connection's byte stream (plain or TLS) with deadlines: reads must finish by the request's
// deadline, writes by the response's, however slowly the peer trickles bytes. A request may not
// read more than max_request_bytes (header lines, their number and the body together, whatever
// the framing), and a response whose header says "Connection: close" closes the connection.
class DeadlineStream final : public httplib::Stream {
 public:
  DeadlineStream(int fd, SSL* ssl, const AdminHttpLimits& limits)
      : fd_(fd), ssl_(ssl), limits_(limits) {}

  // A new request may start: its bytes must all arrive within `seconds` from now.
  void begin_request(double seconds) {
    read_deadline_ = mono_ns() + ns_of(seconds);
    writing_ = false;
    consumed_ = 0;
    header_.reset();
  }
  // The request will be the connection's last (httplib closes after it, as for an HTTP/1.0
  // request without "Connection: Keep-Alive"): its response says so.
  void close_after() { close_requested_ = true; }
  // Health-probe mode (a connection over --admin-max-connections): only GET /healthz or
  // /readyz is read; any other request line fails the read.
  void health_only() { health_only_ = true; }
  bool close_requested() const { return close_requested_; }
  // Data already received (buffered here or inside TLS) and not yet read.
  bool has_buffered() const { return pos_ < len_ || (ssl_ != nullptr && SSL_pending(ssl_) > 0); }

  bool is_readable() const override { return has_buffered() || wait(POLLIN, read_deadline_); }
  bool is_writable() const override { return wait(POLLOUT, write_deadline()); }

  ssize_t read(char* ptr, size_t size) override {
    if (consumed_ >= limits_.max_request_bytes) return -1;
    size = std::min(size, limits_.max_request_bytes - consumed_);
    if (pos_ == len_) {
      pos_ = len_ = 0;
      while (true) {
        const IoResult r = io_read(buf_, sizeof buf_);
        if (r.n > 0) {
          len_ = static_cast<std::size_t>(r.n);
          break;
        }
        if (r.wait == 0) return r.n;  // closed or failed
        if (!wait(r.wait, read_deadline_)) return -1;
      }
    }
    const std::size_t n = std::min(size, len_ - pos_);
    if (health_only_ && !line_checked_) {
      for (std::size_t i = 0; i < n && !line_checked_; ++i) {
        const char c = buf_[pos_ + i];
        if (c == '\r' || c == '\n' || line_.size() >= 64) {
          if (!health_probe(line_)) return -1;
          line_checked_ = true;
        } else {
          line_ += c;
        }
      }
    }
    for (std::size_t i = 0; i < n && !header_.done(); ++i) {
      if (!header_.take(buf_[pos_ + i])) return -1;
    }
    std::memcpy(ptr, buf_ + pos_, n);
    pos_ += n;
    consumed_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!writing_) {
      writing_ = true;
      write_deadline_ = mono_ns() + ns_of(limits_.response_s);
      head_.clear();
      head_done_ = false;
    }
    if (head_done_) {
      if (send_all(ptr, size)) return static_cast<ssize_t>(size);
      close_requested_ = true;
      return -1;
    }
    // The header block is held until it is whole: a response after which the connection closes
    // must say so, or the client may send its next request into the closing connection.
    std::size_t used = 0;  // bytes of ptr taken into head_
    while (true) {
      const std::size_t taken = std::min(size - used, kMaxHead - head_.size());
      head_.append(ptr + used, taken);
      used += taken;
      const std::size_t end = head_.find("\r\n\r\n");
      if (end == std::string::npos && head_.size() < kMaxHead) return static_cast<ssize_t>(size);
      const std::size_t len = end == std::string::npos ? head_.size() : end + 4;
      bool interim = false;
      const std::string head = finish_head(len, interim);
      std::string rest = head_.substr(len);
      head_.clear();
      if (!send_all(head.data(), head.size())) {
        close_requested_ = true;  // a head cut short: nothing more on this connection
        return -1;
      }
      if (interim) {
        // "100 Continue" (httplib's answer to Expect: 100-continue, before the request is
        // routed): the final response's header block comes next, and is the one that counts.
        head_ = std::move(rest);
        continue;
      }
      head_done_ = true;
      const bool sent = send_all(rest.data(), rest.size()) && send_all(ptr + used, size - used);
      if (!sent) close_requested_ = true;
      return sent ? static_cast<ssize_t>(size) : -1;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) describe(a, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) describe(a, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  struct IoResult {
    ssize_t n = 0;   // > 0: bytes moved
    short wait = 0;  // POLLIN/POLLOUT: retry when ready; 0: n is final (0 closed, -1 failed)
  };

  IoResult io_read(char* p, std::size_t n) {
    if (ssl_ == nullptr) {
      const ssize_t r = ::recv(fd_, p, n, MSG_DONTWAIT);
      if (r >= 0) return {r, 0};
      return errno == EAGAIN || errno == EINTR ? IoResult{0, POLLIN} : IoResult{-1, 0};
    }
    const int r = SSL_read(ssl_, p, static_cast<int>(std::min<std::size_t>(n, 1 << 30)));
    return ssl_result(r);
  }
  IoResult io_write(const char* p, std::size_t n) {
    if (ssl_ == nullptr) {
      const ssize_t r = ::send(fd_, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r >= 0) return {r, r == 0 ? short(POLLOUT) : short(0)};
      return errno == EAGAIN || errno == EINTR ? IoResult{0, POLLOUT} : IoResult{-1, 0};
    }
    const int r = SSL_write(ssl_, p, static_cast<int>(std::min<std::size_t>(n, 1 << 30)));
    return ssl_result(r);
  }
  IoResult ssl_result(int r) {
    if (r > 0) return {r, 0};
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
        return {0, POLLIN};
      case SSL_ERROR_WANT_WRITE:
        return {0, POLLOUT};
      case SSL_ERROR_ZERO_RETURN:
        return {0, 0};
      default:
        ERR_clear_error();
        return {-1, 0};
    }
  }

  static constexpr std::size_t kMaxHead = 16384;

  bool send_all(const char* p, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const IoResult r = io_write(p + done, n - done);
      if (r.n > 0) {
        done += static_cast<std::size_t>(r.n);
        continue;
      }
      if (r.wait == 0 || !wait(r.wait, write_deadline_)) return false;
    }
    return true;
  }

  // The response's header block (head_'s first `len` bytes), as it goes out. "Connection: close"
  // there (set by the handlers when a request's body was left unread) ends the connection after
  // this response, and so does an error status httplib may answer while parsing. The head
  // returned then says "Connection: close" and no Keep-Alive (httplib writes one unless the
  // request asked to close), so the client sends nothing more on it. An interim (1xx) response
  // is returned as it is, and `interim` set: the final one follows.
  std::string finish_head(std::size_t len, bool& interim) {
    std::string lower = head_.substr(0, len);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const int status = lower.size() > 12 ? std::atoi(lower.c_str() + 9) : 0;
    const bool whole = len >= 4 && lower.compare(len - 4, 4, "\r\n\r\n") == 0;
    interim = whole && status >= 100 && status < 200;
    if (interim) return head_.substr(0, len);
    if (lower.find("\r\nconnection: close\r\n") != std::string::npos) close_requested_ = true;
    // An error httplib answers while parsing (400, 413, 414, 431...) may leave the rest of the
    // request unread: nothing after it is taken as another request. The handlers' own refusals
    // come after the whole body was read.
    if (status >= 400 && status != 401 && status != 403 && status != 404 && status != 409 &&
        status != 422) {
      close_requested_ = true;
    }
    if (!close_requested_ || !whole) return head_.substr(0, len);
    std::string out;
    out.reserve(len + 20);
    std::size_t line = 0;
    while (line < len - 2) {  // each header line but the blank one that ends the block
      const std::size_t next = lower.find("\r\n", line) + 2;
      const std::string_view name(lower.data() + line, next - line);
      if (line == 0 || (name.rfind("keep-alive:", 0) != 0 && name.rfind("connection:", 0) != 0)) {
        out.append(head_, line, next - line);
      }
      line = next;
    }
    out += "Connection: close\r\n\r\n";
    return out;
  }

  std::int64_t write_deadline() const {
    return writing_ ? write_deadline_ : mono_ns() + ns_of(limits_.response_s);
  }
  // Waits for `events` until `deadline`; false when it passed or the connection failed.
  bool wait(short events, std::int64_t deadline) const {
    while (true) {
      const std::int64_t left = deadline - mono_ns();
      if (left <= 0) return false;
      pollfd p{fd_, events, 0};
      const int r =
          ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left / 1'000'000 + 1, 1000)));
      if (r > 0) return (p.revents & (events | POLLHUP | POLLERR)) != 0;
      if (r < 0 && errno != EINTR) return false;
    }
  }
  static void describe(const sockaddr_storage& a, std::string& ip, int& port) {
    char text[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
      ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
      port = ntohs(v4->sin_port);
    } else if (a.ss_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
      ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
      port = ntohs(v6->sin6_port);
    }
    ip = text;
  }

  int fd_;
  SSL* ssl_;
  const AdminHttpLimits& limits_;
  std::int64_t read_deadline_ = 0;
  std::int64_t write_deadline_ = 0;
  bool writing_ = false;
  std::size_t consumed_ = 0;
  bool health_only_ = false, line_checked_ = false, close_requested_ = false, head_done_ = false;
  std::string line_, head_;
  HeaderCheck header_;
  char buf_[4096];
  std::size_t pos_ = 0, len_ = 0;
};

}  // namespace

AdminHttpServer::AdminHttpServer(const AdminHttpLimits& limits,
                                 std::shared_ptr<const TlsContext> tls)
    : limits_(limits), tls_(std::move(tls)) {
  new_task_queue = [] { return new ConnectionThreads; };
  set_payload_max_length(limits_.max_body);
  set_keep_alive_max_count(limits_.max_requests);
  set_keep_alive_timeout(static_cast<time_t>(limits_.keep_alive_s));
}

AdminHttpServer::~AdminHttpServer() = default;

void AdminHttpServer::widen_backlog() {
  const socket_t fd = svr_sock_;
  if (fd != INVALID_SOCKET) ::listen(fd, 1024);
}

bool AdminHttpServer::process_and_close_socket(socket_t sock) {
  struct Slot {
    std::atomic<unsigned>& n;
    ~Slot() { n.fetch_sub(1, std::memory_order_relaxed); }
  } slot{active_};
  const unsigned before = active_.fetch_add(1, std::memory_order_relaxed);
  // Over the cap, a connection may still carry one health probe (a few of them at a time, with a
  // short deadline): a load balancer's /healthz is not starved by whoever holds the slots.
  const bool probe_only = before >= limits_.max_connections;
  ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
  // A response goes out as header and body writes: without this, the body waits for the
  // client's delayed ACK (40 ms a request on Linux).
  const int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL* ssl = nullptr;
  auto finish = [&] {
    if (ssl != nullptr) {
      SSL_shutdown(ssl);
      SSL_free(ssl);
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return true;
  };
  if (probe_only && before >= limits_.max_connections + limits_.probe_slots) {
    if (tls_ == nullptr) {
      static const char kBusy[] =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: "
          "27\r\nConnection: close\r\n\r\ntoo many admin connections\n";
      (void)!::send(sock, kBusy, sizeof kBusy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    return finish();
  }
  if (tls_ != nullptr) {
    ssl = SSL_new(tls_->native());
    if (ssl == nullptr) return finish();
    SSL_set_fd(ssl, sock);
  }
  DeadlineStream stream(sock, ssl, limits_);
  const double first_s = probe_only ? limits_.probe_s : limits_.request_s;
  stream.begin_request(first_s);  // the handshake counts towards the first request's deadline
  if (probe_only) stream.health_only();
  while (ssl != nullptr) {
    const int r = SSL_accept(ssl);
    if (r == 1) break;
    const int e = SSL_get_error(ssl, r);
    ERR_clear_error();
    const bool ready = e == SSL_ERROR_WANT_READ    ? stream.is_readable()
                       : e == SSL_ERROR_WANT_WRITE ? stream.is_writable()
                                                   : false;
    if (!ready) {
      SSL_free(ssl);
      ssl = nullptr;  // no close_notify on a failed handshake
      return finish();
    }
  }
  const std::int64_t end_of_life = mono_ns() + ns_of(limits_.connection_s);
  const unsigned max_requests = probe_only ? 1 : limits_.max_requests;
  for (unsigned n = 0; n < max_requests; ++n) {
    if (n > 0) {
      // Keep-alive: wait for the next request's first byte, or give up; stop() ends the wait.
      // Twice the advertised time (see AdminHttpLimits::keep_alive_s).
      const std::int64_t until = std::min(mono_ns() + ns_of(2 * limits_.keep_alive_s), end_of_life);
      bool ready = stream.has_buffered();
      while (!ready && mono_ns() < until && svr_sock_ != INVALID_SOCKET) {
        pollfd p{sock, POLLIN, 0};
        const int r = ::poll(&p, 1, 200);
        if (r > 0) ready = true;
        if (r < 0 && errno != EINTR) break;
      }
      if (!ready) break;
      stream.begin_request(limits_.request_s);
    }
    bool closed = false;
    const bool last = n + 1 == max_requests || svr_sock_ == INVALID_SOCKET ||
                      mono_ns() + ns_of(limits_.request_s) >= end_of_life;
    if (!process_request(stream, last, closed,
                         [&stream](httplib::Request& req) {
                           // httplib's own rule (before the response is written): an HTTP/1.0
                           // request closes the connection unless it says exactly "Connection:
                           // Keep-Alive".
                           if (req.version == "HTTP/1.0" &&
                               req.get_header_value("Connection") != "Keep-Alive") {
                             stream.close_after();
                           }
                         }) ||
        closed || last || stream.close_requested()) {
      break;
    }
  }
  return finish();
}

void http_reply(httplib::Response& res, int status, const std::string& body, const char* type) {
  res.status = status;
  res.set_content(body, type);
}

std::string bearer_token(const httplib::Request& req) {
  const std::string h = req.get_header_value("Authorization");
  if (h.size() < 8) return {};
  for (std::size_t i = 0; i < 7; ++i) {
    if (static_cast<char>(std::tolower(static_cast<unsigned char>(h[i]))) != "bearer "[i])
      return {};
  }
  std::size_t start = 7;
  while (start < h.size() && h[start] == ' ') ++start;
  return h.substr(start);
}

}  // namespace pgwarden::core
