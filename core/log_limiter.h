// Rate limiting of log lines per call site, so a flood of one message (a hostile client's
// protocol errors, a password-guessing run) cannot bury everything else or fill a disk.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/log_line.h"

namespace pgwarden::core {

// A call site is its format string's address (each PGW_* line has its own literal; identical
// literals merged by the linker count as one site). Each site may write `per_second` lines in a
// window of one second that starts with its first line; further lines in the window are counted
// and the last of them kept. Once the window is over, one summary replaces them: the last
// suppressed message with "repeated K times in the last Xs". The next line starts a new window.
// Up to kSites sites are tracked; lines from sites beyond that are never limited.
//
// Not thread-safe: the logger calls it under its queue's lock. Times are CLOCK_MONOTONIC ns.
class LogLimiter {
 public:
  static constexpr std::size_t kSites = 512;
  static constexpr std::size_t kKeptText = 256;  // of the last suppressed message
  static constexpr std::int64_t kWindowNs = 1'000'000'000;

  struct Summary {
    LogLevel level = LogLevel::Info;
    int core = -1;
    std::uint64_t repeated = 0;
    double interval_s = 0;
    std::size_t length = 0;
    char text[kKeptText];
    std::string_view message() const { return {text, length}; }
  };

  explicit LogLimiter(unsigned per_second = 20) : per_second_(per_second) {}

  void set_per_second(unsigned n) noexcept { per_second_ = n; }  // 0: no limit
  unsigned per_second() const noexcept { return per_second_; }

  // Whether a line from `site` may be written now. When the site's last window is over and
  // suppressed lines, `pending` gets its summary (written before this line) and true is returned
  // in `has_pending`.
  bool admit(const void* site, std::int64_t now_ns, LogLevel level, int core,
             std::string_view message, Summary& pending, bool& has_pending) noexcept;

  // Summaries of windows that are over (with `all`, of every window that suppressed lines: at
  // exit); each is passed to `emit` once. Cheap when none waits.
  template <typename F>
  void sweep(std::int64_t now_ns, F&& emit, bool all = false) {
    if (waiting_ == 0) return;
    Summary s;
    for (Slot& slot : slots_) {
      if (slot.site != nullptr && take_summary(slot, now_ns, s, all)) {
        emit(static_cast<const Summary&>(s));
      }
    }
  }

  std::uint64_t suppressed_total() const noexcept { return suppressed_total_; }

 private:
  struct Slot {
    const void* site = nullptr;
    std::int64_t window_start = 0;
    unsigned written = 0;
    std::uint64_t suppressed = 0;
    Summary last;
  };
  Slot* find(const void* site) noexcept;
  bool take_summary(Slot& slot, std::int64_t now_ns, Summary& out, bool now = false) noexcept;

  unsigned per_second_;
  std::size_t waiting_ = 0;  // slots with suppressed lines not yet summarised
  std::uint64_t suppressed_total_ = 0;
  std::array<Slot, kSites> slots_{};
};

}  // namespace pgwarden::core
