// The on-disk record format (recorder/FORMAT.md, version 1): framed records (length, type,
// CRC32C, payload) hash-chained with SHA-256 within and across the segments of one core, each
// closed segment ending with an HMAC-SHA256 seal. Sans-I/O: SegmentWriter produces bytes, the
// caller writes them; parse_record reads them back.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/crypto.h"

namespace pgwarden::recorder {

inline constexpr int kFormatVersion = 1;
inline constexpr std::size_t kHeaderSize = 9;  // u32 payload length, u8 type, u32 CRC32C
inline constexpr std::uint32_t kMaxPayload = 16u << 20;
// Statement texts and parameters longer than this are recorded clipped, with the SHA-256 of the
// whole value.
inline constexpr std::size_t kMaxValue = 1u << 20;

using Hash = std::array<unsigned char, 32>;

enum class RecordType : std::uint8_t {
  SegmentStart = 1,
  Seal = 2,
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
  Identity = 10,
  Groups = 11,
  Client = 12,
  Application = 13,
  Database = 14,
  Role = 15,
  Tls = 16,
  Method = 17,
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
};
const char* field_name(Field f);

std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t n) noexcept;

// Builds one record payload: u64 timestamp (UTC microseconds), u64 session id, u64 link (the
// first 8 bytes of the chain hash before this record, filled in by SegmentWriter), then fields.
class Payload {
 public:
  void reset(std::int64_t ts_us, std::uint64_t session);
  Payload& add(Field f, std::string_view value);
  Payload& add(Field f, std::uint64_t value);  // decimal text
  // Text fields longer than kMaxValue: clipped, plus TextSha256 of the whole value.
  Payload& add_clipped(Field f, std::string_view value);
  std::string_view bytes() const noexcept { return buf_; }

 private:
  std::string buf_;
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

// Chain step: next = SHA-256(prev || record bytes).
Hash chain_next(const Hash& prev, std::string_view record);
std::uint64_t link_of(const Hash& h) noexcept;  // its first 8 bytes, little-endian
using protocol::hmac_sha256;
std::string hex(std::string_view bytes);

// The seal's MAC input: the chain hash before the seal, and the seal's own facts.
std::string seal_input(const Hash& chain, unsigned core, std::uint64_t segment,
                       std::uint64_t records, bool final);

// Appends records of one core to an in-memory buffer, keeping the hash chain. Sans-I/O.
// append() only copies the record in; its link, CRC32C and chain step are computed when the bytes
// are taken (take(), seal(), last_hash()) or 256 KiB have accumulated, in one warm loop over
// everything appended meanwhile: on the gateway's hot path, hashing each record alone between
// syscalls ran with cold caches.
class SegmentWriter {
 public:
  SegmentWriter(unsigned core, std::string key) : core_(core), key_(std::move(key)) {}
  // Starts segment `seq` chained to `prev` (the previous segment's last hash, zeros at first).
  void begin(std::uint64_t seq, const Hash& prev, std::int64_t ts_us);
  // Appends a record; returns its end offset within the segment.
  std::uint64_t append(RecordType type, const Payload& payload);
  // Continues a segment found on disk (crash recovery), to seal it.
  void resume(std::uint64_t seq, const Hash& last, std::uint64_t records, std::uint64_t bytes);
  // Appends the seal (final: the gateway shut down cleanly; otherwise a successor follows).
  // `reason` is recorded in the seal (e.g. that the segment was recovered after a crash).
  void seal(std::int64_t ts_us, bool final, std::string_view reason = {});

  // How many bytes were produced and not yet taken.
  std::size_t pending_size() const noexcept { return pending_.size(); }
  // The bytes produced and not yet taken, complete (chained), and leaves none pending.
  std::string take();
  std::uint64_t segment() const noexcept { return seq_; }
  std::uint64_t segment_bytes() const noexcept { return bytes_; }
  std::uint64_t records() const noexcept { return records_; }
  // The chain hash after the last record appended.
  const Hash& last_hash();

 private:
  void put(RecordType type, std::string_view payload);
  void chain();  // completes the records from chained_ on: link, CRC32C, chain step

  unsigned core_;
  std::string key_;
  std::uint64_t seq_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t records_ = 0;
  Hash chain_{};  // after the last chained record
  std::string pending_;
  std::size_t chained_ = 0;  // pending_ up to here is complete
  Payload scratch_;
};

}  // namespace pgwarden::recorder
