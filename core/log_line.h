// One log line, text or JSON, built in a caller's fixed buffer: no allocation, bounded length,
// and nothing in a message (client text included) can end the line early or reach a terminal as
// a control sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string_view>

namespace pgwarden::core {

enum class LogLevel : int { Debug = 0, Info = 1, Warn = 2, Error = 3 };
enum class LogFormat : int { Text = 0, Json = 1 };

// The longest line written (newline included); a longer message is cut at a character boundary
// and marked "...(truncated)" (JSON: "truncated":true).
inline constexpr std::size_t kMaxLogLine = 2048;

// What a line says besides its message.
struct LogFields {
  LogLevel level = LogLevel::Info;
  timespec time{};             // CLOCK_REALTIME
  int core = -1;               // the worker core that logged it, -1: another thread
  std::uint64_t repeated = 0;  // a rate-limit summary: lines like it not written ...
  double interval_s = 0;       // ... in this many seconds
  std::uint64_t dropped = 0;   // a queue-overflow notice: lines lost
};

// Writes one line (ending in '\n') into out[0, cap) and returns its length; cap >= kMaxLogLine.
//   text: 2026-12-02T17:07:08.123456Z WARN message
//   json: {"time":"2026-12-02T17:07:08.123456Z","level":"warn","msg":"message","core":0}
// The message is escaped the same way in both: \n \r \t \\ as such, other control characters
// (C0, DEL, C1), bytes that are not valid UTF-8, and Unicode line separators and bidirectional
// overrides as \xNN or \uNNNN, so a client can neither start a forged line nor hide text.
std::size_t format_log_line(char* out, std::size_t cap, LogFormat format, const LogFields& fields,
                            std::string_view message) noexcept;

const char* log_level_name(LogLevel level) noexcept;  // "INFO", ...

}  // namespace pgwarden::core
