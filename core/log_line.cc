#include "core/log_line.h"

#include <cstdio>
#include <cstring>

namespace pgwarden::core {
namespace {

// Room kept after the message for what closes the line (summary, truncation mark, JSON fields).
constexpr std::size_t kTailRoom = 224;

// A fixed buffer that takes a piece whole or not at all, so a cut never splits an escape or a
// UTF-8 sequence.
struct Out {
  char* p;
  std::size_t n;
  std::size_t limit;
  bool put(const char* s, std::size_t len) noexcept {
    if (n + len > limit) return false;
    std::memcpy(p + n, s, len);
    n += len;
    return true;
  }
  bool put(std::string_view s) noexcept { return put(s.data(), s.size()); }
};

// The code point of a valid UTF-8 sequence at s[i] and its length, or length 0 (overlong forms,
// surrogates and values past U+10FFFF are not valid).
std::size_t utf8_decode(std::string_view s, std::size_t i, char32_t& cp) noexcept {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  std::size_t n = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  return n;
}

// Code points shown as \uNNNN: C1 controls (some terminals obey them), line and paragraph
// separators (JavaScript and some viewers break lines there), bidirectional controls (they
// reorder what a reader sees).
bool escaped_code_point(char32_t cp) noexcept {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

// A visible escape ("\x1b", "\n"); in JSON its backslash is itself escaped.
bool put_escape(Out& o, bool json, const char* esc, std::size_t len) noexcept {
  char buf[16];
  std::size_t n = 0;
  for (std::size_t i = 0; i < len; ++i) {
    if (json && esc[i] == '\\') buf[n++] = '\\';
    buf[n++] = esc[i];
  }
  return o.put(buf, n);
}

// Appends the escaped message; false if it had to stop early (no room).
bool put_message(Out& o, bool json, std::string_view msg) noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < msg.size();) {
    const auto c = static_cast<unsigned char>(msg[i]);
    bool ok = true;
    std::size_t used = 1;
    if (c >= 0x20 && c < 0x7f) {
      if (c == '\\') {
        ok = put_escape(o, json, "\\\\", 2);
      } else if (c == '"' && json) {
        ok = o.put("\\\"", 2);
      } else {
        ok = o.put(&msg[i], 1);
      }
    } else if (c == '\n') {
      ok = put_escape(o, json, "\\n", 2);
    } else if (c == '\r') {
      ok = put_escape(o, json, "\\r", 2);
    } else if (c == '\t') {
      ok = put_escape(o, json, "\\t", 2);
    } else if (char32_t cp = 0; c >= 0x80 && (used = utf8_decode(msg, i, cp)) != 0) {
      if (escaped_code_point(cp)) {
        const char esc[] = {
            '\\',         'u', kHex[(cp >> 12) & 15], kHex[(cp >> 8) & 15], kHex[(cp >> 4) & 15],
            kHex[cp & 15]};
        ok = put_escape(o, json, esc, sizeof esc);
      } else {
        ok = o.put(&msg[i], used);
      }
    } else {
      used = 1;  // a control character or a byte that does not start valid UTF-8
      const char esc[] = {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
      ok = put_escape(o, json, esc, sizeof esc);
    }
    if (!ok) return false;
    i += used;
  }
  return true;
}

std::size_t put_time(char* out, const timespec& t) noexcept {
  tm utc{};
  gmtime_r(&t.tv_sec, &utc);
  std::size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &utc);
  n += static_cast<std::size_t>(std::snprintf(out + n, 32 - n, ".%06ldZ", t.tv_nsec / 1000));
  return n;
}

constexpr const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
constexpr const char* kJsonNames[] = {"debug", "info", "warn", "error"};

}  // namespace

const char* log_level_name(LogLevel level) noexcept {
  return kNames[static_cast<int>(level) & 3];
}

std::size_t format_log_line(char* out, std::size_t cap, LogFormat format, const LogFields& f,
                            std::string_view message) noexcept {
  const bool json = format == LogFormat::Json;
  const int level = static_cast<int>(f.level) & 3;
  char time[32];
  const std::size_t time_len = put_time(time, f.time);
  Out o{out, 0, cap - kTailRoom};
  char tail[kTailRoom];
  if (json) {
    o.put("{\"time\":\"");
    o.put(time, time_len);
    o.put("\",\"level\":\"");
    o.put(kJsonNames[level]);
    o.put("\",\"msg\":\"");
  } else {
    o.put(time, time_len);
    o.put(" ");
    o.put(kNames[level]);
    o.put(" ");
  }
  const bool whole = put_message(o, json, message);
  o.limit = cap;
  int t = 0;
  if (json) {
    t = std::snprintf(tail, sizeof tail, "\"");
    if (f.core >= 0) t += std::snprintf(tail + t, sizeof tail - t, ",\"core\":%d", f.core);
    if (f.repeated > 0) {
      t += std::snprintf(tail + t, sizeof tail - t, ",\"repeated\":%llu,\"interval_s\":%.1f",
                         static_cast<unsigned long long>(f.repeated), f.interval_s);
    }
    if (f.dropped > 0) {
      t += std::snprintf(tail + t, sizeof tail - t, ",\"dropped\":%llu",
                         static_cast<unsigned long long>(f.dropped));
    }
    if (!whole) t += std::snprintf(tail + t, sizeof tail - t, ",\"truncated\":true");
    t += std::snprintf(tail + t, sizeof tail - t, "}\n");
  } else {
    if (!whole) t = std::snprintf(tail, sizeof tail, "...(truncated)");
    if (f.repeated > 0) {
      t += std::snprintf(tail + t, sizeof tail - t, " (repeated %llu times in the last %.1fs)",
                         static_cast<unsigned long long>(f.repeated), f.interval_s);
    }
    t += std::snprintf(tail + t, sizeof tail - t, "\n");
  }
  o.put(tail, static_cast<std::size_t>(t));
  return o.n;
}

}  // namespace pgwarden::core
