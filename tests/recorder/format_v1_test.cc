// Version 1 directories (a SHA-256 chain step per record, written before version 2) still verify,
// still name what was altered, are sealed on recovery in their own format, and are continued by
// version 2 segments. And recovery of a version 2 segment never vouches for records it cannot
// authenticate: what an abrupt stop left unchained is cut off, and an altered record stays caught.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "recorder/format.h"
#include "recorder/reader.h"
#include "tests/recorder/record_files.h"

namespace pgwarden::recorder {
namespace {

namespace fs = std::filesystem;
using namespace test_files;  // NOLINT: kKey, slurp, spit, first_record

void put_le(std::string& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

// Writes records the way version 1 did: link = the chain before the record, CRC32C, then
// chain = SHA-256(chain || record).
class V1Writer {
 public:
  void add(RecordType type, Payload& p) {
    std::string payload(p.bytes());
    for (int i = 0; i < 8; ++i) payload[16 + i] = static_cast<char>(chain_[i]);
    std::string rec;
    put_le(rec, payload.size(), 4);
    rec.push_back(static_cast<char>(type));
    put_le(rec, 0, 4);
    rec += payload;
    std::uint32_t crc = crc32c(0, rec.data(), 5);
    crc = crc32c(crc, rec.data() + kHeaderSize, payload.size());
    for (int i = 0; i < 4; ++i) rec[5 + i] = static_cast<char>(crc >> (8 * i));
    chain_ = chain_next(chain_, rec);
    out_ += rec;
    ++records_;
  }
  // One segment: start, `queries` queries and (unless open) a seal.
  std::string segment(unsigned core, std::uint64_t seq, int queries, bool seal, bool final) {
    out_.clear();
    records_ = 0;
    Payload p;
    p.reset(1, 0);
    p.add(Field::Version, 1)
        .add(Field::Core, core)
        .add(Field::Segment, seq)
        .add(Field::PrevHash,
             std::string_view(reinterpret_cast<const char*>(chain_.data()), chain_.size()));
    add(RecordType::SegmentStart, p);
    for (int i = 0; i < queries; ++i) {
      p.reset(2 + i, 0x77);
      p.add(Field::Text, "SELECT " + std::to_string(seq * 100 + static_cast<unsigned>(i)));
      add(RecordType::Query, p);
    }
    if (seal) {
      const Hash mac = hmac_sha256(kKey, seal_input(chain_, core, seq, records_ + 1, final));
      p.reset(99, 0);
      p.add(Field::Records, records_ + 1)
          .add(Field::Final, final ? 1 : 0)
          .add(Field::Mac, std::string_view(reinterpret_cast<const char*>(mac.data()), 32));
      add(RecordType::Seal, p);
    }
    return out_;
  }

 private:
  Hash chain_{};
  std::string out_;
  std::uint64_t records_ = 0;
};

class V1Dir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("pgw-rec1-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "core-00");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(std::uint64_t seq) const {
    return (dir_ / segment_relative_path(0, seq)).string();
  }
  fs::path dir_;
  V1Writer v1_;
};

TEST_F(V1Dir, AVersion1DirectoryVerifiesAndNamesAnAlteredRecord) {
  spit(path(1), v1_.segment(0, 1, 4, true, false));
  spit(path(2), v1_.segment(0, 2, 4, true, true));
  VerifyReport r = verify_dir(dir_.string(), kKey);
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 12u);
  // A record rewritten with its CRC fixed: the next record's link names it.
  std::string data = slurp(path(2));
  std::size_t at = 0, size = 0;
  Record rec;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(parse_record(std::string_view(data).substr(at), rec, size), ParseStatus::Ok);
    at += size;
  }
  ASSERT_EQ(parse_record(std::string_view(data).substr(at), rec, size), ParseStatus::Ok);
  data[at + size - 1] = '9';
  std::uint32_t crc = crc32c(0, data.data() + at, 5);
  crc = crc32c(crc, data.data() + at + kHeaderSize, size - kHeaderSize);
  for (int i = 0; i < 4; ++i) data[at + 5 + i] = static_cast<char>(crc >> (8 * i));
  spit(path(2), data);
  r = verify_dir(dir_.string(), kKey);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("core-00/00000002.pwrec: record 4"), std::string::npos) << r.problem;
  EXPECT_NE(r.problem.find("hash chain broken"), std::string::npos) << r.problem;
}

// A version 1 gateway stopped abruptly: the upgraded one does not seal that segment (no key
// protects its records: anyone could have written them) and says why. A version 1 segment sealed
// by a clean stop is continued by version 2 segments chained to it.
TEST_F(V1Dir, AnOpenVersion1SegmentIsNotSealedButASealedOneIsContinued) {
  spit(path(1), v1_.segment(0, 1, 3, true, false));
  const std::string open = v1_.segment(0, 2, 3, false, false);
  spit(path(2), open + std::string("\x30\0\0", 3));  // and a partial record
  Resume r = resume_point(dir_.string(), 0, kKey);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("version 1 segment left open"), std::string::npos) << r.problem;

  V1Writer again;
  spit(path(1), again.segment(0, 1, 3, true, false));
  spit(path(2), again.segment(0, 2, 3, true, true));
  r = resume_point(dir_.string(), 0, kKey);
  ASSERT_TRUE(r.ok) << r.problem;
  EXPECT_TRUE(r.last_sealed);
  SegmentWriter w(0, kKey);
  w.begin(3, r.last_tail, 6);
  Payload p;
  p.reset(7, 0x88);
  p.add(Field::Text, "SELECT 1");
  w.append(RecordType::Query, p);
  w.seal(8, true);
  spit(path(3), w.take());
  const VerifyReport v = verify_dir(dir_.string(), kKey);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.segments, 3u);
}

// A version 1 segment chained to a version 2 seal (forged: version 1 has no keyed chain) fails
// verify, and a gateway restarted over it refuses to seal it.
TEST_F(V1Dir, AVersion1SegmentAfterVersion2IsRefused) {
  SegmentWriter w(0, kKey);
  w.begin(1, w.tail(), 1);
  w.seal(2, true);
  spit(path(1), w.take());
  // The forger chains a version 1 segment to the seal's MAC, which it can read.
  Payload p;
  p.reset(3, 0);
  p.add(Field::Version, 1)
      .add(Field::Core, 0)
      .add(Field::Segment, 2)
      .add(Field::PrevHash, w.tail());
  std::string forged;
  {
    std::string payload(p.bytes());
    Hash chain{};
    std::memcpy(chain.data(), w.tail().data(), 32);
    for (int i = 0; i < 8; ++i) payload[16 + i] = static_cast<char>(chain[i]);
    std::string rec;
    put_le(rec, payload.size(), 4);
    rec.push_back(static_cast<char>(RecordType::SegmentStart));
    put_le(rec, 0, 4);
    rec += payload;
    std::uint32_t crc = crc32c(0, rec.data(), 5);
    crc = crc32c(crc, rec.data() + kHeaderSize, payload.size());
    for (int i = 0; i < 4; ++i) rec[5 + i] = static_cast<char>(crc >> (8 * i));
    forged = rec;
  }
  spit(path(2), forged);
  const VerifyReport v = verify_dir(dir_.string(), kKey);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.problem.find("version 1 segment after version 2"), std::string::npos) << v.problem;
  const Resume r = resume_point(dir_.string(), 0, kKey);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("version 1 segment after version 2"), std::string::npos) << r.problem;
}

// Version 2: records an abrupt stop left after the last chain record are not vouched for by the
// recovery seal (cut off), and an altered record before them stays caught after recovery.
TEST_F(V1Dir, Version2RecoveryCutsUnchainedRecordsAndLaundersNothing) {
  SegmentWriter w(0, kKey);
  w.begin(1, w.tail(), 1);
  Payload p;
  for (int i = 0; i < 3; ++i) {
    p.reset(2 + i, 0x99);
    p.add(Field::Text, "SELECT " + std::to_string(i));
    w.append(RecordType::Query, p);
  }
  const std::string chained = w.take();
  p.reset(9, 0x99);
  p.add(Field::Text, "SELECT unchained");
  w.append(RecordType::Query, p);
  std::string unchained = w.take();
  unchained.resize(unchained.size() - 40);  // its chain record never reached the disk
  spit(path(1), chained + unchained);
  Resume r = resume_point(dir_.string(), 0, kKey);
  ASSERT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.version, 2);
  EXPECT_EQ(r.last_valid_bytes, chained.size());
  EXPECT_EQ(r.last_records, 5u);  // start, 3 queries, chain

  // Someone alters a chained record (CRC fixed) while the gateway is down; recovery seals.
  std::string data = chained;
  std::size_t rec_at = 0, size = 0;
  Record rec;
  for (;;) {
    ASSERT_EQ(parse_record(std::string_view(data).substr(rec_at), rec, size), ParseStatus::Ok);
    if (rec.get(Field::Text) == "SELECT 1") break;
    rec_at += size;
  }
  data[rec_at + size - 1] = '7';
  std::uint32_t crc = crc32c(0, data.data() + rec_at, 5);
  crc = crc32c(crc, data.data() + rec_at + kHeaderSize, size - kHeaderSize);
  for (int i = 0; i < 4; ++i) data[rec_at + 5 + i] = static_cast<char>(crc >> (8 * i));
  spit(path(1), data + unchained);
  r = resume_point(dir_.string(), 0, kKey);
  EXPECT_FALSE(r.ok);  // recovery does not seal what the keyed chain does not vouch for
  EXPECT_NE(r.problem.find("hash chain broken"), std::string::npos) << r.problem;
  // Unaltered, the same recovery seals, and the result verifies.
  spit(path(1), chained + unchained);
  r = resume_point(dir_.string(), 0, kKey);
  ASSERT_TRUE(r.ok) << r.problem;
  SegmentWriter clean(0, kKey);
  clean.resume(r.version, r.last_seq, r.last_chain, r.last_records, r.last_valid_bytes);
  clean.seal(20, true, "recovered");
  spit(path(1), chained + clean.take());
  const VerifyReport ok = verify_dir(dir_.string(), kKey);
  EXPECT_TRUE(ok.ok) << ok.problem;
}

// The chain's MAC, fed in pieces of any size, is the GCM tag of AES-256-GCM with the whole input
// as additional data, under the segment's derived key (HMAC-SHA256(key, "pgwarden-chain-v2" ||
// core || segment || salt)) and the batch ordinal as nonce; another nonce gives another tag.
TEST(ChainMacTest, IsTheGcmTagUnderTheDerivedKeyAndTheBatchNonce) {
  const std::string salt = "0123456789abcdef";
  std::string info("pgwarden-chain-v2");
  put_le(info, 7, 4);
  put_le(info, 9, 8);
  info += salt;
  const Hash k = hmac_sha256(kKey, info);
  EVP_CIPHER_CTX* ref = EVP_CIPHER_CTX_new();
  ChainMac mine;
  mine.set_key(kKey, 7, 9, salt);
  std::string input;
  for (int i = 0; i < 300; ++i) input.push_back(static_cast<char>(i * 37 + 11));
  for (std::size_t len : {0u, 1u, 15u, 16u, 17u, 31u, 32u, 33u, 48u, 100u, 255u, 256u, 300u}) {
    const std::string_view m = std::string_view(input).substr(0, len);
    unsigned char iv[12] = {3};  // batch 3
    int out = 0;
    ASSERT_EQ(EVP_EncryptInit_ex(ref, EVP_aes_256_gcm(), nullptr, k.data(), iv), 1);
    if (len != 0) {
      ASSERT_EQ(
          EVP_EncryptUpdate(ref, nullptr, &out, reinterpret_cast<const unsigned char*>(m.data()),
                            static_cast<int>(len)),
          1);
    }
    unsigned char none[16];
    ASSERT_EQ(EVP_EncryptFinal_ex(ref, none, &out), 1);
    Mac want{};
    ASSERT_EQ(EVP_CIPHER_CTX_ctrl(ref, EVP_CTRL_GCM_GET_TAG, 16, want.data()), 1);
    for (std::size_t split : {std::size_t{0}, std::size_t{1}, len / 3, len / 2, len}) {
      if (split > len) continue;
      mine.start(3);
      mine.update(m.substr(0, split));
      mine.update(m.substr(split, (len - split) / 2));
      mine.update(m.substr(split + (len - split) / 2));
      EXPECT_EQ(mine.finish(), want) << "length " << len << ", split " << split;
    }
    mine.start(4);
    mine.update(m);
    EXPECT_NE(mine.finish(), want) << "length " << len;
  }
  EVP_CIPHER_CTX_free(ref);
}

}  // namespace
}  // namespace pgwarden::recorder
