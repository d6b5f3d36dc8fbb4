#include "recorder/format.h"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>

namespace pgwarden::recorder {

namespace {

void put_u32(std::string& out, std::uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 4);
}

void put_u64(std::string& out, std::uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}

std::uint64_t get_le(const char* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// CRC32C (Castagnoli), reflected polynomial 0x82F63B78.
struct CrcTable {
  std::uint32_t t[256];
  CrcTable() {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
      t[i] = c;
    }
  }
};

std::uint32_t crc32c_soft(std::uint32_t crc, const unsigned char* p, std::size_t n) {
  static const CrcTable table;
  while (n-- > 0) crc = table.t[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return crc;
}

__attribute__((target("sse4.2"))) std::uint32_t crc32c_hw(std::uint32_t crc, const unsigned char* p,
                                                          std::size_t n) {
  std::uint64_t c = crc;
  while (n >= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (n-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}

const EVP_MD* sha256() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

}  // namespace

std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t n) noexcept {
  static const bool hw = __builtin_cpu_supports("sse4.2");
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  crc = hw ? crc32c_hw(crc, p, n) : crc32c_soft(crc, p, n);
  return ~crc;
}

const char* type_name(RecordType t) {
  switch (t) {
    case RecordType::SegmentStart:
      return "segment_start";
    case RecordType::Seal:
      return "seal";
    case RecordType::SessionStart:
      return "session_start";
    case RecordType::Query:
      return "query";
    case RecordType::Parse:
      return "parse";
    case RecordType::Bind:
      return "bind";
    case RecordType::Execute:
      return "execute";
    case RecordType::Outcome:
      return "outcome";
    case RecordType::SessionEnd:
      return "session_end";
    case RecordType::Refused:
      return "refused";
    case RecordType::Row:
      return "row";
    case RecordType::Approval:
      return "approval";
    case RecordType::Admin:
      return "admin";
    case RecordType::Token:
      return "token";
  }
  return "unknown";
}

const char* field_name(Field f) {
  switch (f) {
    case Field::Version:
      return "version";
    case Field::Core:
      return "core";
    case Field::Segment:
      return "segment";
    case Field::PrevHash:
      return "prev_hash";
    case Field::Records:
      return "records";
    case Field::Final:
      return "final";
    case Field::Mac:
      return "mac";
    case Field::Identity:
      return "identity";
    case Field::Groups:
      return "groups";
    case Field::Client:
      return "client";
    case Field::Application:
      return "application_name";
    case Field::Database:
      return "database";
    case Field::Role:
      return "role";
    case Field::Tls:
      return "tls";
    case Field::Method:
      return "auth_method";
    case Field::Text:
      return "text";
    case Field::Name:
      return "statement";
    case Field::Portal:
      return "portal";
    case Field::Param:
      return "params";
    case Field::TextSha256:
      return "text_sha256";
    case Field::ParamNull:
      return "params";
    case Field::Value:
    case Field::ValueNull:
      return "values";
    case Field::Tag:
      return "command_tag";
    case Field::Sqlstate:
      return "sqlstate";
    case Field::Message:
      return "message";
    case Field::DurationUs:
      return "duration_us";
    case Field::Rows:
      return "rows";
    case Field::Reason:
      return "reason";
    case Field::Statement:
      return "statement_seq";
    case Field::Bytes:
      return "bytes";
    case Field::Direction:
      return "direction";
    case Field::Decision:
      return "decision";
    case Field::Rule:
      return "rule";
    case Field::Classes:
      return "classes";
    case Field::Masking:
      return "masking";
    case Field::Target:
      return "target";
    case Field::Actor:
      return "actors";
    case Field::ClientId:
      return "client_id";
    case Field::Intent:
      return "intent";
    case Field::TraceParent:
      return "traceparent";
    case Field::TraceState:
      return "tracestate";
    case Field::McpSession:
      return "mcp_session";
    case Field::McpCall:
      return "mcp_call";
    case Field::JsonRpcId:
      return "jsonrpc_id";
    case Field::Tool:
      return "tool";
    case Field::Arguments:
      return "arguments";
    case Field::McpClient:
      return "mcp_client";
  }
  return "unknown";
}

void Payload::reset(std::int64_t ts_us, std::uint64_t session) {
  buf_.clear();
  put_u64(buf_, static_cast<std::uint64_t>(ts_us));
  put_u64(buf_, session);
  put_u64(buf_, 0);  // link, set when appended
}

Payload& Payload::add(Field f, std::string_view value) {
  buf_.push_back(static_cast<char>(f));
  put_u32(buf_, static_cast<std::uint32_t>(value.size()));
  buf_.append(value);
  return *this;
}

Payload& Payload::add(Field f, std::uint64_t value) {
  char digits[24];
  const auto res = std::to_chars(digits, digits + sizeof digits, value);
  return add(f, std::string_view(digits, static_cast<std::size_t>(res.ptr - digits)));
}

Payload& Payload::add_clipped(Field f, std::string_view value) {
  if (value.size() <= kMaxValue) return add(f, value);
  add(f, value.substr(0, kMaxValue));
  unsigned char digest[32];
  unsigned int len = 0;
  EVP_Digest(value.data(), value.size(), digest, &len, sha256(), nullptr);
  return add(Field::TextSha256, hex(std::string_view(reinterpret_cast<char*>(digest), len)));
}

std::string_view Record::get(Field f) const {
  for (const auto& [k, v] : fields) {
    if (k == f) return v;
  }
  return {};
}

ParseStatus parse_record(std::string_view bytes, Record& out, std::size_t& size, std::string* why) {
  auto corrupt = [&](const char* reason) {
    if (why != nullptr) *why = reason;
    return ParseStatus::Corrupt;
  };
  if (bytes.size() < kHeaderSize) return ParseStatus::Incomplete;
  const auto len = static_cast<std::uint32_t>(get_le(bytes.data(), 4));
  if (len > kMaxPayload || len < 24) return corrupt("record length out of range");
  if (bytes.size() < kHeaderSize + len) return ParseStatus::Incomplete;
  const auto stored = static_cast<std::uint32_t>(get_le(bytes.data() + 5, 4));
  std::uint32_t crc = crc32c(0, bytes.data(), 5);
  crc = crc32c(crc, bytes.data() + kHeaderSize, len);
  if (crc != stored) return corrupt("CRC32C mismatch");
  out.type = static_cast<RecordType>(static_cast<unsigned char>(bytes[4]));
  std::string_view p = bytes.substr(kHeaderSize, len);
  out.ts_us = static_cast<std::int64_t>(get_le(p.data(), 8));
  out.session = get_le(p.data() + 8, 8);
  out.link = get_le(p.data() + 16, 8);
  p.remove_prefix(24);
  out.fields.clear();
  while (!p.empty()) {
    if (p.size() < 5) return corrupt("truncated field header");
    const auto flen = static_cast<std::uint32_t>(get_le(p.data() + 1, 4));
    if (flen > p.size() - 5) return corrupt("field longer than its record");
    out.fields.emplace_back(static_cast<Field>(static_cast<unsigned char>(p[0])),
                            p.substr(5, flen));
    p.remove_prefix(5 + flen);
  }
  size = kHeaderSize + len;
  return ParseStatus::Ok;
}

Hash chain_next(const Hash& prev, std::string_view record) {
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  thread_local std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
  Hash out{};
  unsigned int len = 0;
  EVP_DigestInit_ex(ctx.get(), sha256(), nullptr);
  EVP_DigestUpdate(ctx.get(), prev.data(), prev.size());
  EVP_DigestUpdate(ctx.get(), record.data(), record.size());
  EVP_DigestFinal_ex(ctx.get(), out.data(), &len);
  return out;
}

std::uint64_t link_of(const Hash& h) noexcept {
  return get_le(reinterpret_cast<const char*>(h.data()), 8);
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::string seal_input(const Hash& chain, unsigned core, std::uint64_t segment,
                       std::uint64_t records, bool final) {
  std::string s("pgwarden-seal-v1");
  s.append(reinterpret_cast<const char*>(chain.data()), chain.size());
  put_u32(s, core);
  put_u64(s, segment);
  put_u64(s, records);
  s.push_back(final ? '\1' : '\0');
  return s;
}

void SegmentWriter::put(RecordType type, std::string_view payload) {
  put_u32(pending_, static_cast<std::uint32_t>(payload.size()));
  pending_.push_back(static_cast<char>(type));
  put_u32(pending_, 0);  // CRC32C, and the link in the payload: chain()
  pending_.append(payload);
  bytes_ += kHeaderSize + payload.size();
  ++records_;
}

void SegmentWriter::chain() {
  while (chained_ < pending_.size()) {
    char* rec = pending_.data() + chained_;
    const auto len = static_cast<std::size_t>(get_le(rec, 4));
    std::memcpy(rec + kHeaderSize + 16, chain_.data(), 8);  // the link
    std::uint32_t crc = crc32c(0, rec, 5);
    crc = crc32c(crc, rec + kHeaderSize, len);
    for (int i = 0; i < 4; ++i) rec[5 + i] = static_cast<char>(crc >> (8 * i));
    chain_ = chain_next(chain_, std::string_view(rec, kHeaderSize + len));
    chained_ += kHeaderSize + len;
  }
}

std::string SegmentWriter::take() {
  chain();
  chained_ = 0;
  // The next batch is likely as large as this one: one allocation now instead of regrowing.
  std::string out;
  out.reserve(std::min<std::size_t>(pending_.size(), 1u << 20));
  out.swap(pending_);
  return out;
}

const Hash& SegmentWriter::last_hash() {
  chain();
  return chain_;
}

void SegmentWriter::begin(std::uint64_t seq, const Hash& prev, std::int64_t ts_us) {
  chain();  // the previous segment's records, if still pending
  seq_ = seq;
  bytes_ = 0;
  records_ = 0;
  chain_ = prev;
  scratch_.reset(ts_us, 0);
  scratch_.add(Field::Version, kFormatVersion)
      .add(Field::Core, core_)
      .add(Field::Segment, seq)
      .add(Field::PrevHash, std::string_view(reinterpret_cast<const char*>(prev.data()), 32));
  put(RecordType::SegmentStart, scratch_.bytes());
}

std::uint64_t SegmentWriter::append(RecordType type, const Payload& payload) {
  put(type, payload.bytes());
  // Bytes nobody takes for a while (a write in flight, a failing disk) are chained every 256 KiB,
  // so taking them never stalls on more than that.
  if (pending_.size() - chained_ >= (256u << 10)) chain();
  return bytes_;
}

void SegmentWriter::resume(std::uint64_t seq, const Hash& last, std::uint64_t records,
                           std::uint64_t bytes) {
  chain();
  seq_ = seq;
  chain_ = last;
  records_ = records;
  bytes_ = bytes;
}

void SegmentWriter::seal(std::int64_t ts_us, bool final, std::string_view reason) {
  chain();
  const Hash mac = hmac_sha256(key_, seal_input(chain_, core_, seq_, records_ + 1, final));
  scratch_.reset(ts_us, 0);
  scratch_.add(Field::Records, records_ + 1)
      .add(Field::Final, final ? 1 : 0)
      .add(Field::Mac, std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
  if (!reason.empty()) scratch_.add(Field::Reason, reason);
  put(RecordType::Seal, scratch_.bytes());
}

}  // namespace pgwarden::recorder
