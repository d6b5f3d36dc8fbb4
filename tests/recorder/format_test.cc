// Record format round trip, CRC, chain and seal, and what `verify` catches: altered, removed,
// reordered or truncated records and segments, a wrong key; a partial last record after a crash is
// tolerated. Version 2 (chained per batch) is written; version 1 (chained per record) still
// verifies (recorder/format_v1_test.cc).
#include "recorder/format.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>

#include "recorder/reader.h"
#include "tests/recorder/record_files.h"

namespace pgwarden::recorder {
namespace {

namespace fs = std::filesystem;
using namespace test_files;  // NOLINT: kKey, slurp, spit, first_record

// Offsets of the records in a segment file.
std::vector<std::pair<std::size_t, std::size_t>> records_of(const std::string& data) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  std::string_view rest = data;
  std::size_t at = 0, size = 0;
  Record r;
  while (parse_record(rest, r, size) == ParseStatus::Ok) {
    out.emplace_back(at, size);
    at += size;
    rest.remove_prefix(size);
  }
  return out;
}

class RecordDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("pgw-rec-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    // Two cores; core 0 has three segments (rotated twice), core 1 one, closed cleanly.
    write_core(0, 3);
    write_core(1, 1);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Each segment: start, 2 queries, chain (taken), 3 queries, chain, seal: 9 records.
  void write_core(unsigned core, int segments) {
    SegmentWriter w(core, kKey);
    std::int64_t ts = 1'700'000'000'000'000;
    for (int seg = 1; seg <= segments; ++seg) {
      w.begin(static_cast<std::uint64_t>(seg), w.tail(), ts);
      Payload p;
      std::string bytes;
      for (int i = 0; i < 5; ++i) {
        p.reset(++ts, 0x1000 + core);
        p.add(Field::Text, "SELECT " + std::to_string(seg * 100 + i)).add(Field::Rows, 1);
        w.append(RecordType::Query, p);
        if (i == 1) bytes = w.take();
      }
      w.seal(++ts, seg == segments);
      fs::create_directories(dir_ / ("core-0" + std::to_string(core)));
      spit(path(core, seg), bytes + w.take());
    }
  }
  std::string path(unsigned core, int seg) const {
    return (dir_ / segment_relative_path(core, static_cast<std::uint64_t>(seg))).string();
  }
  VerifyReport verify(const std::string& key = kKey) const { return verify_dir(dir_, key); }

  fs::path dir_;
};

TEST(Format, RoundTripsFieldsAndRejectsBitFlips) {
  SegmentWriter w(7, kKey);
  w.begin(1, w.tail(), 42);
  Payload p;
  p.reset(1'700'000'000'123'456, 0xabcdef);
  const std::string binary("a\0b\xff", 4);
  p.add(Field::Identity, "alice@example.com").add(Field::Param, binary).add(Field::Rows, 12345);
  w.append(RecordType::SessionStart, p);
  const std::string all = w.take();
  std::string_view bytes = all;
  Record r;
  std::size_t size = 0;
  ASSERT_EQ(parse_record(bytes, r, size), ParseStatus::Ok);  // the segment start
  bytes.remove_prefix(size);
  ASSERT_EQ(parse_record(bytes, r, size), ParseStatus::Ok);
  bytes = bytes.substr(0, size);  // a chain record follows
  EXPECT_EQ(r.type, RecordType::SessionStart);
  EXPECT_EQ(r.ts_us, 1'700'000'000'123'456);
  EXPECT_EQ(r.session, 0xabcdefu);
  EXPECT_EQ(r.get(Field::Identity), "alice@example.com");
  EXPECT_EQ(r.get(Field::Param), binary);
  EXPECT_EQ(r.get(Field::Rows), "12345");
  // Every single-bit flip anywhere in the record is caught (CRC32C), or makes it incomplete.
  const std::string good(bytes);
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      std::size_t n = 0;
      EXPECT_NE(parse_record(bad, r, n), ParseStatus::Ok) << i << ":" << bit;
    }
  }
  // Partial records are incomplete, not corrupt.
  for (std::size_t cut = 0; cut < good.size(); ++cut) {
    EXPECT_EQ(parse_record(std::string_view(good).substr(0, cut), r, size),
              ParseStatus::Incomplete);
  }
}

TEST(Format, NumbersAreDecimalTextAtEveryWidth) {
  std::vector<std::uint64_t> values = {0, 1, 9, 10, 99, 100, 999'999, 1'000'000};
  for (std::uint64_t v = 1; v <= UINT64_MAX / 10; v *= 10) {
    values.insert(values.end(), {v * 10 - 1, v * 10, v * 10 + 1, v * 15});
  }
  values.push_back(UINT64_MAX);
  // The fields after the payload's 24-byte prefix: tag, u32 length (little-endian), bytes.
  auto field = [](Field f, const std::string& value) {
    std::string out(5, '\0');
    out[0] = static_cast<char>(f);
    for (int i = 0; i < 4; ++i) out[1 + i] = static_cast<char>(value.size() >> (8 * i));
    return out + value;
  };
  for (const std::uint64_t v : values) {
    Payload p;
    p.reset(0, 0);
    p.add(Field::Rows, v).add(Field::Tag, "after");  // the next field starts where it should
    EXPECT_EQ(p.bytes().substr(24),
              field(Field::Rows, std::to_string(v)) + field(Field::Tag, "after"))
        << v;
  }
}

TEST(Format, Crc32cMatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c(0, "123456789", 9), 0xE3069283u);
  const std::string long_text(1000, 'x');
  // Hardware and table paths agree on split input.
  EXPECT_EQ(crc32c(crc32c(0, long_text.data(), 333), long_text.data() + 333, 667),
            crc32c(0, long_text.data(), 1000));
  // Every length and alignment, against a bit-at-a-time CRC32C (Castagnoli, reflected), whole
  // and split at every point.
  std::string bytes;
  for (int i = 0; i < 48; ++i) bytes += static_cast<char>(i * 37 + 11);
  const auto reference = [](const char* p, std::size_t n) {
    std::uint32_t c = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < n; ++i) {
      c ^= static_cast<unsigned char>(p[i]);
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
  };
  for (std::size_t at = 0; at < 8; ++at) {
    for (std::size_t n = 0; at + n <= bytes.size(); ++n) {
      const char* p = bytes.data() + at;
      ASSERT_EQ(crc32c(0, p, n), reference(p, n)) << at << " " << n;
      for (std::size_t cut = 0; cut <= n; ++cut) {
        ASSERT_EQ(crc32c(crc32c(0, p, cut), p + cut, n - cut), reference(p, n)) << at << n << cut;
      }
    }
  }
}

TEST(Format, LongValuesAreClippedWithTheirHash) {
  Payload p;
  p.reset(0, 0);
  p.add_clipped(Field::Text, std::string(kMaxValue + 10, 'q'));
  std::string bytes;
  Record r;
  std::size_t size = 0;
  ASSERT_EQ(first_record(RecordType::Query, p, bytes, r, size), ParseStatus::Ok);
  EXPECT_EQ(r.get(Field::Text).size(), kMaxValue);
  EXPECT_EQ(r.get(Field::TextSha256).size(), 64u);
}

// A record's values together are bounded: a Bind of 65,535 parameters or a row of as many
// columns (up to 1 GiB in all) is recorded clipped, each value past the budget with its hash, and
// its record stays readable (under kMaxPayload).
TEST(Format, ManyLongValuesStayInOneReadableRecord) {
  Payload p;
  p.reset(0, 0);
  const std::string big(kMaxValue + 1, 'b'), small(100, 's');
  for (int i = 0; i < 10; ++i) p.add_clipped(Field::Param, big);
  for (int i = 0; i < 65525; ++i) p.add_clipped(Field::Param, small);
  std::string bytes, why;
  Record r;
  std::size_t size = 0;
  ASSERT_EQ(first_record(RecordType::Bind, p, bytes, r, size, &why), ParseStatus::Ok) << why;
  EXPECT_LE(size - kHeaderSize, kMaxPayload);
  std::size_t params = 0, hashes = 0, value_bytes = 0;
  for (const auto& [f, v] : r.fields) {
    if (f == Field::Param) ++params, value_bytes += v.size();
    if (f == Field::TextSha256) ++hashes;
  }
  EXPECT_EQ(params, 65535u);
  EXPECT_LE(value_bytes, kMaxValues);
  // All ten long values are clipped (the first ones at kMaxValue); so is every short one past the
  // budget, down to nothing.
  EXPECT_EQ(r.fields[0].second.size(), kMaxValue);
  EXPECT_GT(hashes, 65525u - 100);
  EXPECT_EQ(r.fields.back().first, Field::TextSha256);
  EXPECT_EQ(r.fields[r.fields.size() - 2].second, "");
}

// Every take() closes the batch with a chain record: the CRC32C of each record since the last one,
// in order, under a GMAC over the chain value before the batch; each record's link is that
// value's first 8 bytes. A batch nobody takes is closed every 256 KiB.
TEST(Format, EachTakeEndsWithAChainRecordOverItsBatch) {
  SegmentWriter w(3, kKey);
  w.begin(5, w.tail(), 1);
  std::string all;
  Payload p;
  for (int i = 0; i < 20; ++i) {
    p.reset(100 + i, 0xfeed);
    // Every fifth record is 100 KiB: untaken bytes pass 256 KiB, where append() closes a batch.
    const std::size_t size = i % 5 == 4 ? 100u << 10 : static_cast<std::size_t>(i) * 7;
    p.add(Field::Statement, static_cast<std::uint64_t>(i)).add(Field::Text, std::string(size, 'x'));
    w.append(RecordType::Query, p);
    if (i % 3 != 0) {
      const std::string taken = w.take();
      Record last;
      std::size_t n = 0;
      ASSERT_EQ(
          parse_record(std::string_view(taken).substr(records_of(taken).back().first), last, n),
          ParseStatus::Ok);
      EXPECT_EQ(last.type, RecordType::Chain) << "take " << i;
      all += taken;
    }
  }
  w.seal(200, true);
  all += w.take();
  EXPECT_EQ(w.pending_size(), 0u);
  EXPECT_EQ(w.take(), "");

  ChainMac mac;
  Mac chain{};
  std::string crcs;
  std::size_t batch_from = 0, chains = 0, records = 0;
  const auto recs = records_of(all);
  for (const auto& [at, size] : recs) {
    Record r;
    std::size_t got = 0;
    ASSERT_EQ(parse_record(std::string_view(all).substr(at), r, got), ParseStatus::Ok);
    ++records;
    if (r.type == RecordType::SegmentStart) {
      ASSERT_EQ(r.get(Field::Version), std::to_string(kFormatVersion));
      mac.set_key(kKey, 3, 5, r.get(Field::Salt));
    }
    EXPECT_EQ(r.link, link_of(chain)) << "record " << records;
    if (r.type == RecordType::Seal) break;
    if (r.type != RecordType::Chain) {
      crcs.append(all, at + 5, 4);
      continue;
    }
    ++chains;
    EXPECT_EQ(r.get(Field::Crcs), crcs);
    EXPECT_EQ(r.get(Field::Batch), std::to_string(chains));
    mac.start(chains);
    mac.update(std::string_view(reinterpret_cast<const char*>(chain.data()), chain.size()));
    mac.update(std::string_view(all).substr(batch_from, at - batch_from));
    mac.update(std::string_view(all).substr(at + kHeaderSize, size - kHeaderSize - 16));
    chain = mac.finish();
    EXPECT_EQ(r.get(Field::Mac),
              std::string_view(reinterpret_cast<const char*>(chain.data()), chain.size()));
    crcs.clear();
    batch_from = at + size;
  }
  EXPECT_EQ(records, recs.size());
  EXPECT_EQ(chains, 13u);  // the takes that had records
  EXPECT_TRUE(crcs.empty());

  // Untaken, a batch closes once 256 KiB accumulated.
  SegmentWriter big(3, kKey);
  big.begin(1, big.tail(), 1);
  for (int i = 0; i < 4; ++i) {  // closed after the third (300 KiB), and by take()
    p.reset(1, 1);
    p.add(Field::Text, std::string(100u << 10, 'y'));
    big.append(RecordType::Query, p);
  }
  const std::string four = big.take();
  std::size_t closes = 0;
  for (const auto& [at, size] : records_of(four)) {
    closes += static_cast<unsigned char>(four[at + 4]) == static_cast<int>(RecordType::Chain);
  }
  EXPECT_EQ(closes, 2u);
}

TEST_F(RecordDir, IntactDirectoryVerifies) {
  const VerifyReport r = verify();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.segments, 4u);
  EXPECT_EQ(r.records, 4u * 9u);
}

TEST_F(RecordDir, WrongKeyFails) {
  const VerifyReport r = verify("another key entirely, 32 bytes..");
  EXPECT_FALSE(r.ok);
  // The first batch's MAC, keyed like the seal, already tells.
  EXPECT_NE(r.problem.find("another key wrote it"), std::string::npos) << r.problem;
}

TEST_F(RecordDir, AlteredByteIsNamed) {
  std::string data = slurp(path(0, 2));
  const auto recs = records_of(data);
  data[recs[4].first + recs[4].second - 2] ^= 1;  // inside the 5th record's text
  spit(path(0, 2), data);
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("core-00/00000002.pwrec: record 5 at offset"), std::string::npos)
      << r.problem;
}

// Sets a record's CRC32C to what its bytes give now.
void fix_crc(std::string& data, std::size_t at, std::size_t size) {
  std::uint32_t crc = crc32c(0, data.data() + at, 5);
  crc = crc32c(crc, data.data() + at + kHeaderSize, size - kHeaderSize);
  for (int i = 0; i < 4; ++i) data[at + 5 + i] = static_cast<char>(crc >> (8 * i));
}

// Rewrites a record and recomputes its CRC: its batch's chain record lists another CRC32C.
TEST_F(RecordDir, AlteredRecordWithFixedCrcIsNamedByItsChainRecord) {
  std::string data = slurp(path(0, 1));
  const auto recs = records_of(data);
  const std::size_t at = recs[2].first;
  data[at + recs[2].second - 1] = '9';  // "SELECT 101" -> "SELECT 109"
  fix_crc(data, at, recs[2].second);
  spit(path(0, 1), data);
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("core-00/00000001.pwrec: record 3"), std::string::npos) << r.problem;
  EXPECT_NE(r.problem.find("hash chain broken"), std::string::npos) << r.problem;
}

// An attacker without the key rewrites a record, recomputes its CRC and the one its chain record
// lists (and that record's own CRC): the batch's MAC, keyed, does not verify.
TEST_F(RecordDir, AlteredRecordWithItsListedCrcRewrittenFailsTheBatchMac) {
  std::string data = slurp(path(0, 1));
  const auto recs = records_of(data);
  data[recs[5].first + recs[5].second - 1] = '9';  // "SELECT 103" -> "SELECT 109"
  fix_crc(data, recs[5].first, recs[5].second);
  Record chain;
  std::size_t n = 0;
  ASSERT_EQ(parse_record(std::string_view(data).substr(recs[7].first), chain, n), ParseStatus::Ok);
  ASSERT_EQ(chain.type, RecordType::Chain);
  const std::size_t listed = static_cast<std::size_t>(chain.get(Field::Crcs).data() - data.data());
  data.replace(listed + 4, 4, data, recs[5].first + 5, 4);  // the 2nd record of the batch
  fix_crc(data, recs[7].first, recs[7].second);
  spit(path(0, 1), data);
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("core-00/00000001.pwrec: records 5 to 8"), std::string::npos)
      << r.problem;
  EXPECT_NE(r.problem.find("MAC does not verify"), std::string::npos) << r.problem;
}

// The seal's MAC covers its whole payload: its time and any field added to it, not only its counts.
TEST_F(RecordDir, ASealWithItsTimeChangedOrAFieldAddedFails) {
  const std::string original = slurp(path(0, 2));
  const auto recs = records_of(original);
  const auto [at, size] = recs[8];
  std::string data = original;
  data[at + kHeaderSize + 2] ^= 0x10;  // the seal's timestamp, days earlier
  fix_crc(data, at, size);
  spit(path(0, 2), data);
  VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("seal does not verify"), std::string::npos) << r.problem;
  // A field inserted before the MAC, the record's length adjusted.
  data = original.substr(0, at);
  std::string seal = original.substr(at, size);
  seal.insert(kHeaderSize + 24, std::string("\x06\x01\0\0\0"
                                            "0",
                                            6));  // final = 0, first
  const auto len = static_cast<std::uint32_t>(seal.size() - kHeaderSize);
  for (int i = 0; i < 4; ++i) seal[static_cast<std::size_t>(i)] = static_cast<char>(len >> (8 * i));
  fix_crc(seal, 0, seal.size());
  spit(path(0, 2), data + seal);
  r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("seal"), std::string::npos) << r.problem;
}

// Records moved from one batch into another carry the other batch's link.
TEST_F(RecordDir, ARecordMovedToAnotherBatchIsNamed) {
  std::string data = slurp(path(0, 3));
  const auto recs = records_of(data);
  const std::string moved = data.substr(recs[2].first, recs[2].second);
  data.erase(recs[2].first, recs[2].second);
  data.insert(recs[4].first - moved.size(), moved);  // into the second batch, first
  spit(path(0, 3), data);
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("core-00/00000003.pwrec: record 3"), std::string::npos) << r.problem;
}

TEST_F(RecordDir, RemovedRecordIsNamed) {
  std::string data = slurp(path(0, 2));
  const auto recs = records_of(data);
  data.erase(recs[2].first, recs[2].second);
  spit(path(0, 2), data);
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("core-00/00000002.pwrec: record 3"), std::string::npos) << r.problem;
}

TEST_F(RecordDir, ReorderedRecordsAreNamed) {
  std::string data = slurp(path(1, 1));
  const auto recs = records_of(data);
  const std::string a = data.substr(recs[4].first, recs[4].second);
  const std::string b = data.substr(recs[5].first, recs[5].second);
  data.replace(recs[4].first, a.size() + b.size(), b + a);
  spit(path(1, 1), data);
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("core-01/00000001.pwrec: record 5"), std::string::npos) << r.problem;
}

TEST_F(RecordDir, TruncatedSealedSegmentIsCaught) {
  std::string data = slurp(path(0, 1));
  spit(path(0, 1), data.substr(0, records_of(data)[8].first));  // the seal cut off
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("core-00/00000001.pwrec"), std::string::npos) << r.problem;
  EXPECT_NE(r.problem.find("without a seal"), std::string::npos) << r.problem;
}

TEST_F(RecordDir, DeletedMiddleSegmentIsNamed) {
  fs::remove(path(0, 2));
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("segment 2 of this core is missing"), std::string::npos) << r.problem;
}

TEST_F(RecordDir, DeletedLastSegmentIsCaught) {
  fs::remove(path(0, 3));
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("successor (segment 3) is missing"), std::string::npos) << r.problem;
}

TEST_F(RecordDir, SwappedSegmentFilesAreCaught) {
  const std::string one = slurp(path(0, 1)), two = slurp(path(0, 2));
  spit(path(0, 1), two);
  spit(path(0, 2), one);
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("core-00/00000001.pwrec: record 1"), std::string::npos) << r.problem;
}

// Guarantee 11: a clean shutdown seals every segment, so with no gateway recording into a core an
// unsealed segment lost its tail; while a gateway records (holds the core's lock) the newest one
// is legitimately open and a partial record at its end is being written.
TEST_F(RecordDir, AnUnsealedSegmentFailsUnlessAGatewayRecordsIntoIt) {
  std::string data = slurp(path(1, 1));
  const auto recs = records_of(data);
  // The tail, seal included, cut off after a clean shutdown.
  spit(path(1, 1), data.substr(0, recs[8].first));
  VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("not sealed and no gateway is recording into it"), std::string::npos)
      << r.problem;
  // A partial record at the end, as a crash leaves it: the same without a gateway.
  spit(path(1, 1), data.substr(0, recs[8].first) + data.substr(recs[4].first, 7));
  EXPECT_FALSE(verify().ok);
  // With a gateway holding the core's lock, it is the segment being written.
  const int fd = ::open(lock_path(dir_.string(), 1).c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  EXPECT_TRUE(core_is_live(dir_.string(), 1));
  r = verify();
  EXPECT_TRUE(r.ok) << r.problem;
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes[0].find("partial last record"), std::string::npos) << r.notes[0];
  ::close(fd);
  EXPECT_FALSE(core_is_live(dir_.string(), 1));
  // Where a restarted gateway resumes: after the last complete record.
  const Resume resume = resume_point(dir_.string(), 1, kKey);
  EXPECT_TRUE(resume.ok);
  EXPECT_FALSE(resume.last_sealed);
  EXPECT_EQ(resume.last_records, 8u);
  EXPECT_EQ(resume.last_valid_bytes, recs[8].first);
}

// A crash with records only in the page cache can leave the file longer than what reached the
// disk, the rest zeros: the restart cuts them like a partial record (garbage stays an error).
TEST_F(RecordDir, AZeroFilledTailIsCutOnRestartButGarbageIsNot) {
  std::string data = slurp(path(1, 1));
  const auto recs = records_of(data);
  spit(path(1, 1), data.substr(0, recs[8].first) + std::string(8192, '\0'));
  const Resume resume = resume_point(dir_.string(), 1, kKey);
  EXPECT_TRUE(resume.ok) << resume.problem;
  EXPECT_EQ(resume.last_records, 8u);
  EXPECT_EQ(resume.last_valid_bytes, recs[8].first);
  EXPECT_EQ(resume.zero_tail, 8192u);
  spit(path(1, 1), data.substr(0, recs[8].first) + std::string(100, '\0') + "garbage");
  EXPECT_FALSE(resume_point(dir_.string(), 1, kKey).ok);
}

}  // namespace
}  // namespace pgwarden::recorder
