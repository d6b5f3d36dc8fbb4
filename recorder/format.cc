#include "recorder/format.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace pgwarden::recorder {

namespace {

void put_u32(std::string& out, std::uint32_t v) {
  char b[4];
  store_le<4>(b, v);
  out.append(b, 4);
}

void put_u64(std::string& out, std::uint64_t v) {
  char b[8];
  store_le<8>(b, v);
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
  // The last 0-7 bytes: 4, 2 and 1 at a time (a record's 5-byte header is two steps).
  if (n >= 4) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    c32 = __builtin_ia32_crc32si(c32, v);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    c32 = __builtin_ia32_crc32hi(c32, v);
    p += 2;
    n -= 2;
  }
  if (n != 0) c32 = __builtin_ia32_crc32qi(c32, *p);
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
    case RecordType::Chain:
      return "chain";
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
    case Field::Salt:
      return "salt";
    case Field::Batch:
      return "batch";
    case Field::Crcs:
      return "crcs";
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
    case Field::Executed:
      return "executed";
    case Field::McpClient:
      return "mcp_client";
  }
  return "unknown";
}

void Payload::grow(std::size_t n) {
  const std::size_t cap = std::max({cap_ * 2, size_ + n, std::size_t{512}});
  std::unique_ptr<char[]> bigger(new char[kHeaderSize + cap]);
  if (size_ != 0) std::memcpy(bigger.get() + kHeaderSize, buf_.get() + kHeaderSize, size_);
  buf_ = std::move(bigger);
  cap_ = cap;
}

Payload& Payload::add_clipping(Field f, std::string_view value) {
  const std::size_t limit = std::min(kMaxValue, size_ < kMaxValues ? kMaxValues - size_ : 0);
  if (value.size() <= limit) return add(f, value);
  add(f, value.substr(0, limit));
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

std::uint64_t link_of(const unsigned char* chain) noexcept {
  return get_le(reinterpret_cast<const char*>(chain), 8);
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

std::string seal_input_v2(const Mac& chain, unsigned core, std::uint64_t segment,
                          std::string_view payload_before_mac) {
  std::string s("pgwarden-seal-v2");
  s.append(reinterpret_cast<const char*>(chain.data()), chain.size());
  put_u32(s, core);
  put_u64(s, segment);
  s.append(payload_before_mac);
  return s;
}

// GMAC: AES-256-GCM over the batch as additional data, nothing encrypted. GHASH runs on the
// CPU's carry-less multiply at about a byte per instruction; the nonce is the batch's ordinal,
// never repeated under one segment's key (each segment start draws a fresh salt, and recovery
// seals with the HMAC key, never with a segment's chain key).
struct ChainMac::Impl {
  EVP_CIPHER* aes = nullptr;
  EVP_CIPHER_CTX* gcm = nullptr;
};

ChainMac::ChainMac() : impl_(std::make_unique<Impl>()) {
  impl_->aes = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  if (impl_->aes != nullptr) impl_->gcm = EVP_CIPHER_CTX_new();
  if (impl_->gcm == nullptr) throw std::runtime_error("OpenSSL has no AES-256-GCM");
}

ChainMac::~ChainMac() {
  EVP_CIPHER_CTX_free(impl_->gcm);
  EVP_CIPHER_free(impl_->aes);
}

void ChainMac::set_key(std::string_view key, unsigned core, std::uint64_t segment,
                       std::string_view salt) {
  std::string info("pgwarden-chain-v2");
  put_u32(info, core);
  put_u64(info, segment);
  info.append(salt);
  const Hash k = hmac_sha256(key, info);
  if (EVP_EncryptInit_ex(impl_->gcm, impl_->aes, nullptr, k.data(), nullptr) != 1) {
    throw std::runtime_error("cannot key AES-256-GCM");
  }
}

void ChainMac::start(std::uint64_t nonce) {
  unsigned char iv[12] = {};
  for (int i = 0; i < 8; ++i) iv[i] = static_cast<unsigned char>(nonce >> (8 * i));
  if (EVP_EncryptInit_ex(impl_->gcm, nullptr, nullptr, nullptr, iv) != 1) {
    throw std::runtime_error("cannot start GMAC");
  }
}

void ChainMac::update(std::string_view bytes) {
  int len = 0;
  if (!bytes.empty() && EVP_EncryptUpdate(impl_->gcm, nullptr, &len,
                                          reinterpret_cast<const unsigned char*>(bytes.data()),
                                          static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("GMAC failed");
  }
}

Mac ChainMac::finish() {
  Mac out{};
  unsigned char none[16];
  int len = 0;
  if (EVP_EncryptFinal_ex(impl_->gcm, none, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(impl_->gcm, EVP_CTRL_GCM_GET_TAG, 16, out.data()) != 1) {
    throw std::runtime_error("GMAC failed");
  }
  return out;
}

SegmentWriter::SegmentWriter(unsigned core, std::string key)
    : core_(core), key_(std::move(key)), tail_(32, '\0') {}

namespace {

// The CRC32C of the record at `rec` (its length, type and payload), stored in its header.
std::uint32_t put_crc(char* rec) noexcept {
  std::uint32_t crc = crc32c(0, rec, 5);
  crc = crc32c(crc, rec + kHeaderSize, get_le(rec, 4));
  store_le<4>(rec + 5, crc);
  return crc;
}

}  // namespace

void SegmentWriter::put(RecordType type, std::string_view payload) {
  finish_open();
  const std::size_t at = pending_.size();
  char header[kHeaderSize] = {};
  pending_.append(header, kHeaderSize);
  pending_.append(payload);
  frame(pending_.data() + at, type, payload.size());
}

void SegmentWriter::frame(char* rec, RecordType type, std::size_t payload_size) {
  store_le<4>(rec, payload_size);
  rec[4] = static_cast<char>(type);
  // The link: the chain before this record's batch (version 1: before this record).
  std::memcpy(rec + kHeaderSize + 16, version_ == 1 ? chain_v1_.data() : chain_.data(), 8);
  const std::uint32_t crc = put_crc(rec);
  if (version_ == 1) {
    chain_v1_ = chain_next(chain_v1_, std::string_view(rec, kHeaderSize + payload_size));
  } else {
    char c[4];
    store_le<4>(c, crc);
    crcs_.append(c, 4);
  }
  bytes_ += kHeaderSize + payload_size;
  ++records_;
}

void SegmentWriter::finish_open() {
  if (open_at_ == kNoRecord) return;
  char* rec = pending_.data() + open_at_;
  open_at_ = kNoRecord;
  char c[4];
  store_le<4>(c, put_crc(rec));
  crcs_.append(c, 4);
}

void SegmentWriter::close_batch() {
  finish_open();
  last_at_ = kNoRecord;
  if (version_ < 2 || batch_start_ == pending_.size()) return;
  ++batch_;
  scratch_.reset(last_ts_, 0);
  scratch_.add(Field::Batch, batch_)
      .add(Field::Records, crcs_.size() / 4)
      .add(Field::Crcs, crcs_)
      .add(Field::Mac, std::string_view("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16));
  const std::string_view payload = scratch_.bytes();
  // The MAC: over the chain value before the batch, the batch's records as written, and this
  // record's payload up to its MAC (its link included).
  std::memcpy(scratch_.data() + 16, chain_.data(), 8);
  mac_.start(batch_);
  mac_.update(std::string_view(reinterpret_cast<const char*>(chain_.data()), chain_.size()));
  mac_.update(std::string_view(pending_).substr(batch_start_));
  mac_.update(payload.substr(0, payload.size() - 16));
  const Mac next = mac_.finish();
  std::memcpy(scratch_.data() + payload.size() - 16, next.data(), next.size());
  crcs_.clear();
  put(RecordType::Chain, payload);
  crcs_.clear();
  chain_ = next;
  batch_start_ = pending_.size();
}

void SegmentWriter::take_into(std::string& out) {
  close_batch();
  batch_start_ = 0;
  out.clear();
  out.swap(pending_);
}

std::string SegmentWriter::take() {
  close_batch();
  batch_start_ = 0;
  // The next batch is likely as large as this one: one allocation now instead of regrowing.
  std::string out;
  out.reserve(std::min<std::size_t>(pending_.size(), 1u << 20));
  out.swap(pending_);
  return out;
}

void SegmentWriter::begin(std::uint64_t seq, std::string_view prev, std::int64_t ts_us,
                          int version) {
  if (version < 2 || version > kFormatVersion) throw std::invalid_argument("begin: version");
  close_batch();  // the previous segment's records, if still pending
  version_ = version;
  seq_ = seq;
  bytes_ = 0;
  records_ = 0;
  batch_ = 0;
  chain_ = Mac{};
  char salt[16];
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt), sizeof salt) != 1) {
    throw std::runtime_error("no random bytes for a segment's salt");
  }
  mac_.set_key(key_, core_, seq, std::string_view(salt, sizeof salt));
  batch_start_ = pending_.size();
  last_ts_ = ts_us;
  scratch_.reset(ts_us, 0);
  scratch_.add(Field::Version, static_cast<std::uint64_t>(version))
      .add(Field::Core, core_)
      .add(Field::Segment, seq)
      .add(Field::PrevHash, prev)
      .add(Field::Salt, std::string_view(salt, sizeof salt));
  put(RecordType::SegmentStart, scratch_.bytes());
}

// No reader would accept a record over kMaxPayload (and the rest of its segment would be lost to
// them): what is kept is that it was too large. (Values are clipped to stay far below: see
// kMaxValues.)
void SegmentWriter::put_oversized(RecordType type, std::string_view payload) {
  scratch_.reset(last_ts_, get_le(payload.data() + 8, 8));
  scratch_.add(Field::Reason, "(a record of " + std::to_string(payload.size()) +
                                  " bytes, over the format's limit: not kept)");
  put(type, scratch_.bytes());
}

std::uint64_t SegmentWriter::append(RecordType type, const Payload& payload) {
  last_ts_ = static_cast<std::int64_t>(get_le(payload.bytes().data(), 8));
  const std::size_t at = pending_.size();
  if (payload.bytes().size() > kMaxPayload) [[unlikely]] {
    put_oversized(type, payload.bytes());
  } else {
    put(type, payload.bytes());
  }
  return appended(at);
}

std::uint64_t SegmentWriter::append_in_place(RecordType type, Payload& payload) {
  const std::string_view bytes = payload.bytes();
  if (bytes.size() > kMaxPayload || bytes.size() < 24) [[unlikely]] {
    return append(type, payload);
  }
  if (version_ == 1) return append(type, payload);  // (only sealed: never appended to)
  finish_open();
  last_ts_ = static_cast<std::int64_t>(get_le(bytes.data(), 8));
  const std::size_t at = pending_.size();
  // Its CRC32C waits until another record follows or the batch is closed: an Execute that
  // extends it (extend_last) then costs no second pass over it.
  char* rec = payload.header();
  store_le<4>(rec, bytes.size());
  rec[4] = static_cast<char>(type);
  std::memcpy(rec + kHeaderSize + 16, chain_.data(), 8);
  pending_.append(rec, kHeaderSize + bytes.size());
  open_at_ = at;
  bytes_ += kHeaderSize + bytes.size();
  ++records_;
  return appended(at);
}

std::uint64_t SegmentWriter::appended(std::size_t at) {
  last_at_ = at;
  // A batch nobody takes for a while (a write in flight, a failing disk) is closed every 256 KiB,
  // so its chain record stays small and taking it never stalls on more than that.
  if (pending_.size() - batch_start_ >= (256u << 10)) close_batch();
  return bytes_;
}

bool SegmentWriter::extend_last(RecordType type, Field f, std::uint64_t value) {
  if (last_at_ == kNoRecord || version_ < 3 ||
      static_cast<RecordType>(static_cast<unsigned char>(pending_[last_at_ + 4])) != type ||
      pending_.size() - last_at_ - kHeaderSize + 5 + 20 > kMaxPayload) {
    return false;
  }
  char field[5 + 20];
  const std::size_t digits = Payload::decimal_width(value);
  Payload::put_number(field, f, value, digits);
  const std::size_t n = 5 + digits;
  pending_.append(field, n);
  char* rec = pending_.data() + last_at_;
  const std::size_t size = pending_.size() - last_at_ - kHeaderSize;
  store_le<4>(rec, size);
  bytes_ += n;
  if (open_at_ == last_at_) return true;  // its CRC32C is still to be taken (finish_open)
  store_le<4>(crcs_.data() + crcs_.size() - 4, put_crc(rec));  // the batch's last: this record's
  return true;
}

void SegmentWriter::resume(int version, std::uint64_t seq, std::string_view chain,
                           std::uint64_t records, std::uint64_t bytes) {
  close_batch();
  version_ = version;
  seq_ = seq;
  records_ = records;
  bytes_ = bytes;
  batch_start_ = pending_.size();
  crcs_.clear();
  if (version == 1 && chain.size() == chain_v1_.size()) {
    std::memcpy(chain_v1_.data(), chain.data(), chain.size());
  } else if (version >= 2 && chain.size() == chain_.size()) {
    std::memcpy(chain_.data(), chain.data(), chain.size());
  } else {
    throw std::invalid_argument("resume: a chain value of the wrong size");
  }
}

void SegmentWriter::seal(std::int64_t ts_us, bool final, std::string_view reason) {
  close_batch();
  scratch_.reset(ts_us, 0);
  if (version_ == 1) {
    const Hash mac = hmac_sha256(key_, seal_input(chain_v1_, core_, seq_, records_ + 1, final));
    scratch_.add(Field::Records, records_ + 1)
        .add(Field::Final, final ? 1 : 0)
        .add(Field::Mac, std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
    if (!reason.empty()) scratch_.add(Field::Reason, reason);
    put(RecordType::Seal, scratch_.bytes());
    tail_.assign(reinterpret_cast<const char*>(chain_v1_.data()), chain_v1_.size());
  } else {
    scratch_.add(Field::Records, records_ + 1).add(Field::Final, final ? 1 : 0);
    if (!reason.empty()) scratch_.add(Field::Reason, reason);
    static constexpr char kZeros[32] = {};
    scratch_.add(Field::Mac, std::string_view(kZeros, sizeof kZeros));
    std::memcpy(scratch_.data() + 16, chain_.data(), 8);  // the link, as put() sets it
    const std::string_view payload = scratch_.bytes();
    const Hash mac = hmac_sha256(
        key_, seal_input_v2(chain_, core_, seq_, payload.substr(0, payload.size() - 32)));
    std::memcpy(scratch_.data() + payload.size() - 32, mac.data(), mac.size());
    put(RecordType::Seal, scratch_.bytes());
    crcs_.clear();  // the seal is no batch's
    tail_.assign(reinterpret_cast<const char*>(mac.data()), mac.size());
  }
  batch_start_ = pending_.size();
}

}  // namespace pgwarden::recorder
