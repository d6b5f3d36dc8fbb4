// Minimal leveled logging to stderr: one write per line, so lines from different cores do not
// interleave. Off the data path except for errors.
#pragma once

#include <cstdarg>

namespace pgwarden::core {

enum class LogLevel : int { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void set_log_level(LogLevel level) noexcept;
bool log_enabled(LogLevel level) noexcept;
void log(LogLevel level, const char* fmt, ...) noexcept __attribute__((format(printf, 2, 3)));

#define PGW_LOG(level, ...)                                                              \
  do {                                                                                   \
    if (::pgwarden::core::log_enabled(level)) ::pgwarden::core::log(level, __VA_ARGS__); \
  } while (0)
#define PGW_DEBUG(...) PGW_LOG(::pgwarden::core::LogLevel::Debug, __VA_ARGS__)
#define PGW_INFO(...) PGW_LOG(::pgwarden::core::LogLevel::Info, __VA_ARGS__)
#define PGW_WARN(...) PGW_LOG(::pgwarden::core::LogLevel::Warn, __VA_ARGS__)
#define PGW_ERROR(...) PGW_LOG(::pgwarden::core::LogLevel::Error, __VA_ARGS__)

// Invariant checks: PGW_CHECK always aborts on failure (a bug, never bad input).
#define PGW_CHECK(cond)                                                     \
  do {                                                                      \
    if (!(cond)) ::pgwarden::core::check_failed(#cond, __FILE__, __LINE__); \
  } while (0)
[[noreturn]] void check_failed(const char* what, const char* file, int line) noexcept;

}  // namespace pgwarden::core
