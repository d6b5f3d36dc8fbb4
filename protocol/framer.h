// Incremental, zero-copy PostgreSQL v3 framing for one direction of a connection. Bytes may
// arrive split at any point or many messages per read; the framer reports each message as
// fragments that are views into the caller's chunk, so unchanged messages can be forwarded
// from the buffer they arrived in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "protocol/message_types.h"
#include "protocol/result.h"

namespace pgwarden::protocol {

using Bytes = std::span<const std::byte>;

// PostgreSQL's own bounds on an untyped startup-phase packet (src/include/libpq/pqcomm.h).
inline constexpr std::uint32_t kMinStartupPacket = 8;
inline constexpr std::uint32_t kMaxStartupPacket = 10000;

// Part of one message that lies inside the chunk currently being fed.
struct Fragment {
  std::uint8_t type;     // message type byte; 0 for untyped startup-phase packets
  std::uint32_t size;    // whole message on the wire, type byte included
  std::uint32_t offset;  // bytes of this message that came before `bytes` (in earlier chunks)
  Bytes bytes;           // this fragment's bytes, a view into the fed chunk
  bool first;            // first fragment reported for this message
  bool last;             // the message is complete with this fragment
};

// What a fragment handler tells the framer.
enum class Next : std::uint8_t { Continue, Stop };

enum class FeedStatus : std::uint8_t { Consumed, Stopped, Malformed };

// One per direction per session, owned by the session's core. Holds at most the few header bytes
// of a message whose header was split across reads; never buffers message bodies.
class Framer {
 public:
  Framer(Side side, std::uint32_t max_message_size, bool typed) noexcept
      : side_(side), max_size_(max_message_size), typed_(typed) {}

  // Splits `chunk` into fragments and calls `on_fragment(const Fragment&) -> Next` for each in
  // order. The handler may call set_typed() between messages. Returns Malformed (see error())
  // on a bad header; nothing of that message has been reported then.
  template <class Handler>
  FeedStatus feed(Bytes chunk, Handler&& on_fragment) noexcept;

  // Switches between startup-phase framing (int32 length only) and typed messages.
  void set_typed(bool typed) noexcept { typed_ = typed; }
  // The largest message accepted from now on (PostgreSQL allows small ones before the session
  // is authenticated).
  void set_max_message_size(std::uint32_t max) noexcept { max_size_ = max; }
  bool typed() const noexcept { return typed_; }
  // True between messages: no header bytes held and no body outstanding.
  bool at_boundary() const noexcept { return !in_body_ && held_ == 0; }
  // True while part of a message has been reported and the rest is outstanding. When false,
  // everything reported so far ends on a message boundary (a held partial header, or a header
  // rejected as malformed, was never reported), so another message may be injected after it.
  bool in_body() const noexcept { return in_body_; }
  // Header bytes of the current message that arrived in earlier chunks (the first fragment's
  // `offset` counts them). Valid until the next feed().
  Bytes held_prefix() const noexcept { return {hdr_, prefix_}; }
  const std::string& error() const noexcept { return error_; }
  Side side() const noexcept { return side_; }

 private:
  std::uint32_t header_size() const noexcept { return typed_ ? 5 : 4; }
  bool check_header() noexcept;

  Side side_;
  std::uint32_t max_size_;
  bool typed_;
  bool in_body_ = false;
  std::uint8_t held_ = 0;    // header bytes collected so far
  std::uint8_t prefix_ = 0;  // of those, how many came from earlier chunks
  std::uint8_t type_ = 0;
  std::uint32_t size_ = 0;       // whole current message
  std::uint32_t remaining_ = 0;  // bytes of the current message not yet reported
  std::byte hdr_[5]{};
  std::string error_;
};

template <class Handler>
FeedStatus Framer::feed(Bytes chunk, Handler&& on_fragment) noexcept {
  const std::size_t n = chunk.size();
  std::size_t pos = 0;
  while (pos < n) {
    if (in_body_) {
      const std::size_t take = remaining_ < n - pos ? remaining_ : n - pos;
      const std::uint32_t offset = size_ - remaining_;
      remaining_ -= static_cast<std::uint32_t>(take);
      in_body_ = remaining_ != 0;
      const Fragment f{type_, size_, offset, chunk.subspan(pos, take), false, remaining_ == 0};
      pos += take;
      if (on_fragment(f) == Next::Stop) return FeedStatus::Stopped;
      continue;
    }
    const std::size_t start = pos;
    const std::uint8_t had = held_;
    const std::size_t need = header_size() - held_;
    const std::size_t take = need < n - pos ? need : n - pos;
    std::memcpy(hdr_ + held_, chunk.data() + pos, take);
    held_ = static_cast<std::uint8_t>(held_ + take);
    pos += take;
    if (held_ < header_size()) break;  // header still incomplete: wait for the next chunk
    if (!check_header()) return FeedStatus::Malformed;
    held_ = 0;
    prefix_ = had;
    const std::uint32_t body_remaining = size_ - header_size();
    const std::size_t body_take = body_remaining < n - pos ? body_remaining : n - pos;
    remaining_ = body_remaining - static_cast<std::uint32_t>(body_take);
    in_body_ = remaining_ != 0;
    const Fragment f{type_, size_,          had, chunk.subspan(start, pos - start + body_take),
                     true,  remaining_ == 0};
    pos += body_take;
    if (on_fragment(f) == Next::Stop) return FeedStatus::Stopped;
  }
  return FeedStatus::Consumed;
}

// Collects the fragments of one message into a contiguous buffer, for the few messages that must
// be read whole (startup packets, messages the session rewrites). Reuses its storage.
class Assembler {
 public:
  // Adds a fragment (with the framer's held prefix on a first fragment). Returns the whole
  // message once `f.last`, else an empty span.
  Bytes add(const Fragment& f, Bytes held_prefix);
  void clear() noexcept { buf_.clear(); }
  // Gives back the memory of a large message once it has been handled.
  void shrink() noexcept {
    if (buf_.capacity() > kKeep) decltype(buf_)().swap(buf_);
  }
  static constexpr std::size_t kKeep = 64u << 10;
  std::size_t capacity() const noexcept { return buf_.capacity(); }

 private:
  std::basic_string<std::byte> buf_;
};

// Reads a big-endian integer from the start of `p`.
inline std::uint32_t read_u32(const std::byte* p) noexcept {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}
inline std::uint16_t read_u16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>((std::uint32_t(p[0]) << 8) | std::uint32_t(p[1]));
}

}  // namespace pgwarden::protocol
