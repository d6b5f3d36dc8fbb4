// The on-disk record format (recorder/FORMAT.md, version 3): framed records (length, type,
// CRC32C, payload), chained in batches: each batch of records (what one flush writes) ends with a
// chain record listing their CRC32Cs under a GMAC (keyed per segment) over the previous
// chain value and the batch's bytes; each closed segment ends with an HMAC-SHA256 seal. Version 1
// (a SHA-256 chain step per record) is still read and verified. Sans-I/O: SegmentWriter produces
// bytes, the caller writes them; parse_record reads them back.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/crypto.h"

namespace pgwarden::recorder {

inline constexpr int kFormatVersion = 3;
inline constexpr std::size_t kHeaderSize = 9;  // u32 payload length, u8 type, u32 CRC32C
inline constexpr std::uint32_t kMaxPayload = 16u << 20;
// Statement texts and parameters longer than this are recorded clipped, with the SHA-256 of the
// whole value.
inline constexpr std::size_t kMaxValue = 1u << 20;
// A record's values together: past this, each value is clipped to what is left of it (down to
// nothing), with its SHA-256. A Bind or a row carries up to 65,535 values of up to 1 GiB in all;
// clipped this way its record stays under kMaxPayload (8 MiB, plus 74 bytes per value at most).
inline constexpr std::size_t kMaxValues = 8u << 20;

using Hash = std::array<unsigned char, 32>;
using Mac = std::array<unsigned char, 16>;  // a version 2 chain value (GMAC)

enum class RecordType : std::uint8_t {
  SegmentStart = 1,
  Seal = 2,
  Chain = 3,  // version 2: closes a batch (batch, records, crcs, mac)
  SessionStart = 10,
  Query = 11,    // simple Query text
  Parse = 12,    // extended protocol: statement name and text
  Bind = 13,     // portal, statement, parameter values (text as sent, binary as hex)
  Execute = 14,  // portal
  Outcome = 15,  // command tag or error, rows, duration
  SessionEnd = 16,
  Refused = 17,   // a statement pgwarden refused, and why
  Row = 19,       // one result row as the client received it (up to --record-rows per statement)
  Approval = 20,  // a held statement's decision: approved, denied or timed out, by whom, wait
  Admin = 21,     // an administrator's action on the admin API (session id 0)
  Token = 22,     // the session's token was refreshed (SET pgwarden.token); never the token
};
const char* type_name(RecordType t);

// Payload fields: u8 tag, u32 length (little-endian), bytes.
enum class Field : std::uint8_t {
  Version = 1,
  Core = 2,
  Segment = 3,
  PrevHash = 4,
  Records = 5,
  Final = 6,
  Mac = 7,
  Salt = 8,   // version 2 segment start: 16 random bytes in the segment's chain key
  Batch = 9,  // chain record: the batch's ordinal in its segment (1, 2, ...)
  Identity = 10,
  Groups = 11,
  Client = 12,
  Application = 13,
  Database = 14,
  Role = 15,
  Tls = 16,
  Method = 17,
  Crcs = 18,  // chain record: the CRC32C of each record of the batch, 4 bytes each, in order
  Text = 20,
  Name = 21,
  Portal = 22,
  Param = 23,
  TextSha256 = 24,  // present when Text was clipped at kMaxValue
  ParamNull = 25,   // a NULL parameter (in order among the Param fields)
  Value = 26,       // a result column value (row records)
  ValueNull = 27,   // a NULL column value
  Tag = 30,
  Sqlstate = 31,
  Message = 32,
  DurationUs = 33,
  Rows = 34,
  Reason = 35,
  Statement = 36,  // the statement record this outcome belongs to (its record number in session)
  Bytes = 37,
  Direction = 38,
  Decision = 39,     // allow, deny or hold
  Rule = 40,         // the policy rule that decided
  Classes = 41,      // the statement classes it saw
  Masking = 42,      // session start: the masking profile, or "exempt (profile)", or "none"
  Target = 43,       // admin: the session, approval or name acted on
  Actor = 44,        // session start: an agent acting for the identity (repeated: the act chain)
  ClientId = 45,     // session start: the OAuth client the token was issued to (azp)
  Intent = 46,       // statement: why, as the caller said (sqlcommenter intent='...', MCP intent)
  TraceParent = 47,  // statement: W3C traceparent linking it to the caller's trace
  TraceState = 48,
  McpSession = 49,  // statement of an MCP tool call: the MCP session (Mcp-Session-Id)
  McpCall = 50,     // the call's ordinal in its MCP session
  JsonRpcId = 51,   // the tools/call request's JSON-RPC id
  Tool = 52,        // the tool called
  Arguments = 53,   // the tool's arguments (JSON; the SQL is the statement's text)
  McpClient = 54,   // the MCP client (initialize's clientInfo: name/version)
  // Bind (version 3): the statement_seq of the Execute that ran its portal right after it,
  // recorded in the bind record instead of an execute record of its own.
  Executed = 55,
};
const char* field_name(Field f);

std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t n) noexcept;

// The low N bytes of v at p, little-endian (one store on a little-endian CPU).
template <std::size_t N>
inline void store_le(char* p, std::uint64_t v) noexcept {
  static_assert(N >= 1 && N <= 8);
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(p, &v, N);
  } else {
    for (std::size_t i = 0; i < N; ++i) p[i] = static_cast<char>(v >> (8 * i));
  }
}

// Builds one record payload: u64 timestamp (UTC microseconds), u64 session id, u64 link (the
// first 8 bytes of the chain hash before this record, filled in by SegmentWriter), then fields.
// The buffer keeps room for the record's header in front of the payload, so that a writer can
// frame the record where it was built and copy it once (SegmentWriter::append_in_place).
class Payload {
 public:
  // (reset and add are inline: a statement's records take a dozen fields.)
  void reset(std::int64_t ts_us, std::uint64_t session) {
    size_ = 0;
    char* p = extend(24);
    store_le<8>(p, static_cast<std::uint64_t>(ts_us));
    store_le<8>(p + 8, session);
    store_le<8>(p + 16, 0);  // link, set when appended
  }
  // A field's 5-byte head at p: its tag and its value's length (little-endian).
  static void put_head(char* p, Field f, std::size_t length) noexcept {
    p[0] = static_cast<char>(f);
    store_le<4>(p + 1, length);
  }
  Payload& add(Field f, std::string_view value) {
    char* p = extend(5 + value.size());
    put_head(p, f, value.size());
    if (!value.empty()) std::memcpy(p + 5, value.data(), value.size());
    return *this;
  }
  // Fields encoded beforehand (encode), as they are.
  Payload& add_fields(std::string_view encoded) {
    std::memcpy(extend(encoded.size()), encoded.data(), encoded.size());
    return *this;
  }
  // A text field's bytes, as add writes them, appended to `out`.
  static void encode(std::string& out, Field f, std::string_view value) {
    char head[5];
    put_head(head, f, value.size());
    out.append(head, 5).append(value);
  }
  // Decimal text, written in place two digits at a time.
  Payload& add(Field f, std::uint64_t value) {
    const std::size_t n = decimal_width(value);
    put_number(extend(5 + n), f, value, n);
    return *this;
  }
  // A number field's bytes (tag, length, `digits` = decimal_width(value) digits) at p.
  static void put_number(char* p, Field f, std::uint64_t value, std::size_t digits) noexcept {
    put_head(p, f, digits);
    char* d = p + 5 + digits;
    for (; value >= 100; value /= 100) {
      d -= 2;
      std::memcpy(d, kDigitPairs + value % 100 * 2, 2);
    }
    if (value >= 10) {
      std::memcpy(d - 2, kDigitPairs + value * 2, 2);
    } else {
      d[-1] = static_cast<char>('0' + value);
    }
  }
  // Digits of v in decimal: log10 from its bit width, corrected by one comparison.
  static std::size_t decimal_width(std::uint64_t v) noexcept {
    static constexpr std::array<std::uint64_t, 20> kPow10 = [] {
      std::array<std::uint64_t, 20> a{};
      std::uint64_t x = 1;
      for (std::uint64_t& e : a) {
        e = x;
        x *= 10;  // (wraps after the last: unused)
      }
      return a;
    }();
    const std::uint64_t w = v | 1;  // 0 has one digit (and no power of ten >= 10 is odd)
    const auto t =
        static_cast<std::size_t>(std::bit_width(w) * 1233 >> 12);  // 1233/4096 ~ log10(2)
    return t + 1 - (w < kPow10[t] ? 1 : 0);
  }
  // Text fields longer than kMaxValue (or than what is left of kMaxValues): clipped, plus
  // TextSha256 of the whole value.
  Payload& add_clipped(Field f, std::string_view value) {
    if (value.size() <= kMaxValue && size_ + value.size() <= kMaxValues) return add(f, value);
    return add_clipping(f, value);
  }
  std::string_view bytes() const noexcept {
    return buf_ ? std::string_view(buf_.get() + kHeaderSize, size_) : std::string_view();
  }
  char* data() noexcept { return buf_.get() + kHeaderSize; }
  // The kHeaderSize bytes in front of data() (once a field or reset gave the payload a buffer).
  char* header() noexcept { return buf_.get(); }

 private:
  // Room for n more bytes at the end (a plain buffer: std::string would zero what it grows by).
  char* extend(std::size_t n) {
    if (cap_ - size_ < n) grow(n);
    char* p = buf_.get() + kHeaderSize + size_;
    size_ += n;
    return p;
  }
  void grow(std::size_t n);
  Payload& add_clipping(Field f, std::string_view value);
  static constexpr char kDigitPairs[] =
      "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
      "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
      "8081828384858687888990919293949596979899";

  std::unique_ptr<char[]> buf_;
  std::size_t size_ = 0, cap_ = 0;
};

struct Record {
  RecordType type{};
  std::int64_t ts_us = 0;
  std::uint64_t session = 0;
  std::uint64_t link = 0;
  std::vector<std::pair<Field, std::string_view>> fields;  // views into the parsed bytes
  std::string_view get(Field f) const;
};

enum class ParseStatus { Ok, Incomplete, Corrupt };
// Parses the record at the front of `bytes`. Ok: `size` is the record's full length.
ParseStatus parse_record(std::string_view bytes, Record& out, std::size_t& size,
                         std::string* why = nullptr);

// Version 1 chain step: next = SHA-256(prev || record bytes).
Hash chain_next(const Hash& prev, std::string_view record);
std::uint64_t link_of(const unsigned char* chain) noexcept;  // first 8 bytes, little-endian
inline std::uint64_t link_of(const Hash& h) noexcept {
  return link_of(h.data());
}
inline std::uint64_t link_of(const Mac& m) noexcept {
  return link_of(m.data());
}
using protocol::hmac_sha256;
std::string hex(std::string_view bytes);

// The seal's MAC input. Version 1: the chain hash before the seal, and the seal's own facts.
std::string seal_input(const Hash& chain, unsigned core, std::uint64_t segment,
                       std::uint64_t records, bool final);
// Version 2: the last chain value, core and segment, and the seal record's whole payload up to its
// MAC (the MAC is its last field): its time, counts, final flag and reason are all covered.
std::string seal_input_v2(const Mac& chain, unsigned core, std::uint64_t segment,
                          std::string_view payload_before_mac);

// GMAC (AES-256-GCM, the input as additional data) under a segment's chain key:
// HMAC-SHA256(key, "pgwarden-chain-v2" || core (u32) || segment (u64) || salt). The nonce is the
// batch's ordinal in its segment.
class ChainMac {
 public:
  ChainMac();
  ~ChainMac();
  ChainMac(const ChainMac&) = delete;
  ChainMac& operator=(const ChainMac&) = delete;
  void set_key(std::string_view key, unsigned core, std::uint64_t segment, std::string_view salt);
  void start(std::uint64_t nonce);  // a new MAC under the key; nonce: never twice per key
  void update(std::string_view bytes);
  Mac finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Appends records of one core to an in-memory buffer, in version 2. Sans-I/O. Each record is
// complete (link, CRC32C) when taken; the batch of records not yet taken is closed by a chain
// record when the bytes are taken (take(), seal()) or 256 KiB have accumulated: one MAC pass over
// the batch, and nothing per record but its CRC32C.
class SegmentWriter {
 public:
  SegmentWriter(unsigned core, std::string key);
  // Starts segment `seq`. `prev`: what the previous segment's successor names (tail()), or 32
  // zero bytes for a core's first segment.
  // `version`: 2 writes what a version 2 gateway wrote (for tests of upgrades).
  void begin(std::uint64_t seq, std::string_view prev, std::int64_t ts_us,
             int version = kFormatVersion);
  // Appends a record; returns its end offset within the segment.
  std::uint64_t append(RecordType type, const Payload& payload);
  // The same, framing the record in the room `payload` keeps in front of it (its link field is
  // set there): the same bytes, copied once. Its CRC32C is taken when the next record is
  // appended or the batch is closed (take(), seal()), so it may be extended (extend_last) at
  // no extra cost: pending bytes are only complete once taken.
  std::uint64_t append_in_place(RecordType type, Payload& payload);
  // Adds a number field to the record appended last, when it is of `type` and still in the open
  // batch (not taken, no chain record after it): its length and CRC32C are rewritten. False when
  // it cannot be (the caller appends a record of its own).
  bool extend_last(RecordType type, Field f, std::uint64_t value);
  // Continues a segment found on disk (crash recovery), only to seal it: `version` 1 with its
  // SHA-256 chain hash (32 bytes), or 2 with its last chain value (16 bytes).
  void resume(int version, std::uint64_t seq, std::string_view chain, std::uint64_t records,
              std::uint64_t bytes);
  // Closes the batch, then appends the seal (final: the gateway shut down cleanly; otherwise a
  // successor follows). `reason` is recorded in the seal (e.g. that the segment was recovered).
  void seal(std::int64_t ts_us, bool final, std::string_view reason = {});

  // How many bytes were produced and not yet taken.
  std::size_t pending_size() const noexcept { return pending_.size(); }
  // The bytes produced and not yet taken, their batch closed, and leaves none pending.
  std::string take();
  // The same into `out`, which gives its buffer to what is produced next (no allocation when
  // buffers are passed round).
  void take_into(std::string& out);
  std::uint64_t segment() const noexcept { return seq_; }
  const std::string& key() const noexcept { return key_; }
  std::uint64_t segment_bytes() const noexcept { return bytes_; }
  std::uint64_t records() const noexcept { return records_; }
  // What the next segment's start names: after seal(), the seal's MAC (version 2) or the chain
  // hash after the seal (version 1).
  const std::string& tail() const noexcept { return tail_; }

 private:
  void put(RecordType type, std::string_view payload);
  // Fills in the header (length, type, CRC32C) and link of the record framed at `rec`, and takes
  // its CRC32C into the batch (version 1: its hash into the chain).
  void frame(char* rec, RecordType type, std::size_t payload_size);
  std::uint64_t appended(std::size_t at);  // after a record appended at `at`: its end offset
  void finish_open();
  [[gnu::cold, gnu::noinline]] void put_oversized(RecordType type, std::string_view payload);
  void close_batch();  // appends the chain record of the records since the last one

  unsigned core_;
  std::string key_;
  int version_ = kFormatVersion;
  std::uint64_t seq_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t records_ = 0;
  std::uint64_t batch_ = 0;  // batches closed in this segment
  std::int64_t last_ts_ = 0;
  Mac chain_{};      // the last chain value (version 2)
  Hash chain_v1_{};  // the SHA-256 chain (a version 1 segment being sealed)
  ChainMac mac_;
  std::string pending_;
  std::size_t batch_start_ = 0;  // pending_ from here is the open batch
  static constexpr std::size_t kNoRecord = ~std::size_t{0};
  std::size_t last_at_ = kNoRecord;  // the record append() put last, while it may be extended
  // The record append_in_place() put last, while its CRC32C (in its header and in crcs_) is not
  // yet taken: finish_open() takes it before anything else is appended or the batch is closed.
  std::size_t open_at_ = kNoRecord;
  std::string crcs_;  // of the open batch's records
  std::string tail_;
  Payload scratch_;
};

}  // namespace pgwarden::recorder
