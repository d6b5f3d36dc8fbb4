// Leveled logging to stderr that never makes a core wait on it. A caller formats its line (text
// or JSON, core/log_line.h) and queues it in a bounded buffer; one logger thread writes it out.
// A full queue drops lines and counts them; a flood from one call site is rate-limited
// (core/log_limiter.h). Before start_log_writer() and after stop_log_writer(), lines are written
// directly (waiting at most a second for stderr). Off the data path except for errors.
#pragma once

#include <cstdarg>
#include <cstdint>

#include "core/log_line.h"

namespace pgwarden::core {

inline constexpr std::size_t kLogQueueBytes = 1u << 20;

void set_log_level(LogLevel level) noexcept;
void set_log_format(LogFormat format) noexcept;
// Lines per call site per second (0: no limit); see LogLimiter.
void set_log_rate_limit(unsigned per_second) noexcept;
// Labels this thread's lines with a worker core ("core" in JSON); -1: none.
void set_log_core(int core) noexcept;

bool log_enabled(LogLevel level) noexcept;
void log(LogLevel level, const char* fmt, ...) noexcept __attribute__((format(printf, 2, 3)));

// Starts the logger thread writing to `fd` (stderr unless a test says otherwise). The thread
// blocks every signal (SIGPIPE included: a closed stderr loses lines, it does not kill us).
void start_log_writer(int fd = 2);
// Writes what is queued, waiting at most `timeout_s`, then stops the thread (or leaves it to the
// process's exit if it is stuck in a write). Later lines are written directly.
void stop_log_writer(double timeout_s = 2) noexcept;
// Waits until every line queued so far is written, at most `timeout_s`; false on timeout.
bool flush_log(double timeout_s) noexcept;

// Lines lost so far: queue full, stderr not writable or failing.
std::uint64_t log_lines_dropped() noexcept;
// Lines not written by the rate limit (each counted in a summary line).
std::uint64_t log_lines_suppressed() noexcept;

// Starts the writer on construction and stops it (flushing) on destruction: main() holds one.
class LogWriterScope {
 public:
  LogWriterScope() { start_log_writer(); }
  ~LogWriterScope() { stop_log_writer(); }
  LogWriterScope(const LogWriterScope&) = delete;
  LogWriterScope& operator=(const LogWriterScope&) = delete;
};

#define PGW_LOG(level, ...)                                                              \
  do {                                                                                   \
    if (::pgwarden::core::log_enabled(level)) ::pgwarden::core::log(level, __VA_ARGS__); \
  } while (0)
#define PGW_DEBUG(...) PGW_LOG(::pgwarden::core::LogLevel::Debug, __VA_ARGS__)
#define PGW_INFO(...) PGW_LOG(::pgwarden::core::LogLevel::Info, __VA_ARGS__)
#define PGW_WARN(...) PGW_LOG(::pgwarden::core::LogLevel::Warn, __VA_ARGS__)
#define PGW_ERROR(...) PGW_LOG(::pgwarden::core::LogLevel::Error, __VA_ARGS__)

// Invariant checks: PGW_CHECK always aborts on failure (a bug, never bad input). What is queued
// is flushed first (briefly), so the lines before the failure are not lost.
#define PGW_CHECK(cond)                                                     \
  do {                                                                      \
    if (!(cond)) ::pgwarden::core::check_failed(#cond, __FILE__, __LINE__); \
  } while (0)
[[noreturn]] void check_failed(const char* what, const char* file, int line) noexcept;

}  // namespace pgwarden::core
