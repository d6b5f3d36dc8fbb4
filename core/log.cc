#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace pgwarden::core {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
constexpr const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
}  // namespace

void set_log_level(LogLevel level) noexcept {
  g_level.store(static_cast<int>(level));
}

bool log_enabled(LogLevel level) noexcept {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void log(LogLevel level, const char* fmt, ...) noexcept {
  char line[1024];
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  int n = static_cast<int>(strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &utc));
  n += std::snprintf(line + n, sizeof line - n, ".%06ldZ %s ", ts.tv_nsec / 1000,
                     kNames[static_cast<int>(level)]);
  va_list ap;
  va_start(ap, fmt);
  const int m = std::vsnprintf(line + n, sizeof line - n, fmt, ap);
  va_end(ap);
  const int start = n;
  n = m < 0 ? n : (n + m >= static_cast<int>(sizeof line) - 1 ? sizeof line - 2 : n + m);
  // Client text (statements, token headers, names) lands in messages: a control character
  // must not start a forged line, nor reach a terminal as an escape.
  for (int i = start; i < n; ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c < 0x20 || c == 0x7f) line[i] = '?';
  }
  line[n++] = '\n';
  [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, line, n);
}

void check_failed(const char* what, const char* file, int line) noexcept {
  std::fprintf(stderr, "pgwarden: check failed: %s at %s:%d\n", what, file, line);
  std::abort();
}

}  // namespace pgwarden::core
