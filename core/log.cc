#include "core/log.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "core/log_limiter.h"

namespace pgwarden::core {
namespace {

// One write at most this long: a pipe that polled writable takes it without blocking (PIPE_BUF),
// and a chunk always ends at a line's end.
constexpr std::size_t kWriteChunk = 4096;
static_assert(kMaxLogLine <= kWriteChunk);

std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
std::atomic<int> g_format{static_cast<int>(LogFormat::Text)};
std::atomic<std::uint64_t> g_dropped{0};
// A label for this thread's lines, set once by a worker thread; nothing depends on it.
thread_local int t_core = -1;

std::int64_t mono_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

LogFormat format() noexcept {
  return static_cast<LogFormat>(g_format.load(std::memory_order_relaxed));
}

// The queue and the logger thread. Allocated once and never freed: a writer stuck in write() at
// exit is left to the process's end and must still find its state.
struct State {
  std::mutex mu;
  std::condition_variable wake;     // the writer: lines queued, a summary due, or stop
  std::condition_variable written;  // flush_log / stop_log_writer: the writer made progress
  std::unique_ptr<char[]> ring = std::make_unique<char[]>(kLogQueueBytes);
  std::uint64_t pushed = 0;  // byte positions in the ring: queued so far ...
  std::uint64_t popped = 0;  // ... taken by the writer ...
  std::uint64_t done = 0;    // ... and written (or given up on)
  std::uint64_t dropped_unreported = 0;
  LogLimiter limiter;
  int fd = STDERR_FILENO;
  bool running = false;
  bool stopping = false;
  bool finished = false;
  unsigned generation = 0;  // a writer left stuck at a stop exits when it wakes in a later one
  std::atomic<std::int64_t> stop_deadline_ns{0};
  std::thread thread;
};

State& state() {
  static State* s = new State;
  return *s;
}

// Writes all of p[0, n) to fd, waiting for it to be writable; false if it failed or the deadline
// passed first (0: none; the writer also watches the stop deadline).
bool write_out(State& s, int fd, const char* p, std::size_t n, std::int64_t deadline_ns,
               bool writer) noexcept {
  while (n > 0) {
    pollfd pfd{fd, POLLOUT, 0};
    const int r = ::poll(&pfd, 1, 100);
    if (r < 0 && errno != EINTR) return false;
    if (r <= 0) {
      const std::int64_t stop = writer ? s.stop_deadline_ns.load(std::memory_order_relaxed) : 0;
      const std::int64_t now = mono_ns();
      if ((deadline_ns != 0 && now >= deadline_ns) || (stop != 0 && now >= stop)) return false;
      continue;
    }
    if ((pfd.revents & (POLLERR | POLLNVAL)) != 0) return false;
    const ssize_t w = ::write(fd, p, std::min(n, kWriteChunk));
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

std::size_t count_lines(const char* p, std::size_t n) noexcept {
  return static_cast<std::size_t>(std::count(p, p + n, '\n'));
}

// Without the logger thread: write at once, waiting at most a second for stderr.
void write_direct(int fd, const char* line, std::size_t n) noexcept {
  if (!write_out(state(), fd, line, n, mono_ns() + 1'000'000'000, false)) {
    g_dropped.fetch_add(1, std::memory_order_relaxed);
  }
}

// Under s.mu.
void push(State& s, const char* line, std::size_t n) noexcept {
  if (kLogQueueBytes - (s.pushed - s.popped) < n) {
    ++s.dropped_unreported;
    g_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const std::size_t at = s.pushed % kLogQueueBytes;
  const std::size_t first = std::min(n, kLogQueueBytes - at);
  std::memcpy(s.ring.get() + at, line, first);
  std::memcpy(s.ring.get(), line + first, n - first);
  s.pushed += n;
}

std::size_t format_summary(char* out, const LogLimiter::Summary& sum) noexcept {
  LogFields f;
  f.level = sum.level;
  clock_gettime(CLOCK_REALTIME, &f.time);
  f.core = sum.core;
  f.repeated = sum.repeated;
  f.interval_s = sum.interval_s;
  return format_log_line(out, kMaxLogLine, format(), f, sum.message());
}

void writer_loop(unsigned generation) {
  State& s = state();
  char chunk[kWriteChunk];
  char line[kMaxLogLine];
  std::unique_lock lk(s.mu);
  while (s.generation == generation) {
    // At a stop, summaries of windows still open go out too.
    s.limiter.sweep(
        mono_ns(),
        [&](const LogLimiter::Summary& sum) { push(s, line, format_summary(line, sum)); },
        s.stopping);
    const std::int64_t stop = s.stop_deadline_ns.load(std::memory_order_relaxed);
    if (s.stopping && mono_ns() >= stop) {  // out of time: what is left is lost
      for (std::uint64_t i = s.popped; i < s.pushed; ++i) {
        if (s.ring[i % kLogQueueBytes] == '\n') g_dropped.fetch_add(1, std::memory_order_relaxed);
      }
      s.popped = s.done = s.pushed;
      break;
    }
    if (s.pushed == s.popped && s.dropped_unreported == 0) {
      if (s.stopping) break;
      s.wake.wait_for(lk, std::chrono::milliseconds(250));
      continue;
    }
    // Whole lines, oldest first, at most one chunk.
    std::size_t take = std::min<std::uint64_t>(s.pushed - s.popped, kWriteChunk);
    const std::size_t at = s.popped % kLogQueueBytes;
    const std::size_t first = std::min(take, kLogQueueBytes - at);
    std::memcpy(chunk, s.ring.get() + at, first);
    std::memcpy(chunk + first, s.ring.get(), take - first);
    while (take > 0 && chunk[take - 1] != '\n') --take;
    s.popped += take;
    const std::uint64_t dropped = s.dropped_unreported;
    s.dropped_unreported = 0;
    const int fd = s.fd;
    lk.unlock();
    if (!write_out(s, fd, chunk, take, 0, true)) {
      g_dropped.fetch_add(count_lines(chunk, take), std::memory_order_relaxed);
    }
    if (dropped > 0) {
      char msg[96];
      const int m = std::snprintf(msg, sizeof msg, "%llu log lines dropped (stderr too slow)",
                                  static_cast<unsigned long long>(dropped));
      LogFields f;
      f.level = LogLevel::Warn;
      clock_gettime(CLOCK_REALTIME, &f.time);
      f.dropped = dropped;
      const std::size_t n = format_log_line(line, sizeof line, format(), f, {msg, std::size_t(m)});
      if (!write_out(s, fd, line, n, 0, true)) g_dropped.fetch_add(1, std::memory_order_relaxed);
    }
    lk.lock();
    s.done += take;
    s.written.notify_all();
  }
  if (s.generation == generation) s.finished = true;
  s.written.notify_all();
}

// An uncaught exception: what is queued goes out before the runtime's own message and abort.
std::terminate_handler g_previous_terminate = nullptr;
[[noreturn]] void on_terminate() {
  flush_log(1);
  if (g_previous_terminate != nullptr) g_previous_terminate();
  std::abort();
}

}  // namespace

void set_log_level(LogLevel level) noexcept {
  g_level.store(static_cast<int>(level));
}

void set_log_format(LogFormat f) noexcept {
  g_format.store(static_cast<int>(f));
}

void set_log_rate_limit(unsigned per_second) noexcept {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.limiter.set_per_second(per_second);
}

void set_log_core(int core) noexcept {
  t_core = core;
}

bool log_enabled(LogLevel level) noexcept {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void log(LogLevel level, const char* fmt, ...) noexcept {
  // A message cut here is always longer than a line holds, so the line is marked truncated.
  char message[kMaxLogLine];
  va_list ap;
  va_start(ap, fmt);
  const int m = std::vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  const std::string_view text(message, m < 0 ? 0 : std::min<std::size_t>(m, sizeof message - 1));
  LogFields f;
  f.level = level;
  clock_gettime(CLOCK_REALTIME, &f.time);
  f.core = t_core;
  char line[kMaxLogLine];
  const std::size_t n = format_log_line(line, sizeof line, format(), f, text);

  State& s = state();
  LogLimiter::Summary summary;
  bool has_summary = false;
  std::unique_lock lk(s.mu);
  const bool admitted = s.limiter.admit(fmt, mono_ns(), level, t_core, text, summary, has_summary);
  char summary_line[kMaxLogLine];
  const std::size_t summary_n = has_summary ? format_summary(summary_line, summary) : 0;
  if (s.running) {
    if (summary_n > 0) push(s, summary_line, summary_n);
    if (admitted) push(s, line, n);
    lk.unlock();
    s.wake.notify_one();
    return;
  }
  const int fd = s.fd;
  lk.unlock();
  if (summary_n > 0) write_direct(fd, summary_line, summary_n);
  if (admitted) write_direct(fd, line, n);
}

void start_log_writer(int fd) {
  State& s = state();
  std::lock_guard lock(s.mu);
  if (s.running) return;
  s.fd = fd;
  s.running = true;
  s.stopping = false;
  s.finished = false;
  s.stop_deadline_ns.store(0);
  const unsigned generation = ++s.generation;
  // The thread inherits the mask: no signal is ever delivered to it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  s.thread = std::thread(writer_loop, generation);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (g_previous_terminate == nullptr) g_previous_terminate = std::set_terminate(on_terminate);
}

void stop_log_writer(double timeout_s) noexcept {
  State& s = state();
  std::unique_lock lk(s.mu);
  if (!s.running) return;
  s.stopping = true;
  s.stop_deadline_ns.store(mono_ns() + static_cast<std::int64_t>(timeout_s * 1e9));
  s.wake.notify_one();
  // The writer gives up at the deadline once its current poll returns (100 ms).
  s.written.wait_for(lk, std::chrono::duration<double>(timeout_s + 0.5),
                     [&] { return s.finished; });
  const bool finished = s.finished;
  s.running = false;
  ++s.generation;  // a writer still stuck in write() exits when it wakes
  lk.unlock();
  if (finished) {
    s.thread.join();
  } else {
    s.thread.detach();
  }
}

bool flush_log(double timeout_s) noexcept {
  State& s = state();
  std::unique_lock lk(s.mu);
  if (!s.running) return true;
  const std::uint64_t target = s.pushed;
  s.wake.notify_one();
  return s.written.wait_for(lk, std::chrono::duration<double>(timeout_s),
                            [&] { return s.done >= target || !s.running; });
}

std::uint64_t log_lines_dropped() noexcept {
  return g_dropped.load(std::memory_order_relaxed);
}

std::uint64_t log_lines_suppressed() noexcept {
  State& s = state();
  std::lock_guard lock(s.mu);
  return s.limiter.suppressed_total();
}

void check_failed(const char* what, const char* file, int line) noexcept {
  flush_log(1);
  char message[kMaxLogLine];
  const int m = std::snprintf(message, sizeof message, "pgwarden: check failed: %s at %s:%d", what,
                              file, line);
  LogFields f;
  f.level = LogLevel::Error;
  clock_gettime(CLOCK_REALTIME, &f.time);
  f.core = t_core;
  char out[kMaxLogLine];
  const std::size_t n = format_log_line(out, sizeof out, format(), f,
                                        {message, std::min<std::size_t>(m, sizeof message - 1)});
  int fd = STDERR_FILENO;
  {
    std::lock_guard lock(state().mu);
    fd = state().fd;
  }
  write_direct(fd, out, n);
  std::abort();
}

}  // namespace pgwarden::core
