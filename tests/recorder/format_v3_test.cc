// Version 3: an Execute that follows its Bind goes into the bind record (Field::Executed), which
// the writer extends only while it is the last record of the open batch; readers pass it on as
// both events; verify still catches an altered extended record; version 2 segments (written
// before the change) still verify, and version 3 segments continue them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "recorder/format.h"
#include "recorder/reader.h"
#include "recorder/tools.h"
#include "tests/recorder/record_files.h"

namespace pgwarden::recorder {
namespace {

namespace fs = std::filesystem;
using namespace test_files;  // NOLINT: kKey, slurp, spit, first_record

class V3Dir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("pgw-v3-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "core-00");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(int seg) const {
    return (dir_ / segment_relative_path(0, static_cast<std::uint64_t>(seg))).string();
  }
  // One statement's records: a bind of `portal`, extended by its execute when `version` allows.
  bool bind(SegmentWriter& w, std::int64_t ts, std::uint64_t seq, std::string_view portal) {
    Payload p;
    p.reset(ts, 0xab);
    p.add(Field::Statement, seq).add(Field::Portal, portal).add(Field::Name, "s1");
    p.add(Field::Param, "42");
    w.append_in_place(RecordType::Bind, p);  // as the gateway does (its CRC32C taken later)
    return w.extend_last(RecordType::Bind, Field::Executed, seq + 1);
  }
  void query(SegmentWriter& w, std::int64_t ts) {
    Payload p;
    p.reset(ts, 0xab);
    p.add(Field::Statement, 9).add(Field::Text, "SELECT 1");
    w.append_in_place(RecordType::Query, p);
  }
  // (type, statement_seq, portal) of every event the tools see.
  std::vector<std::string> events() const {
    std::vector<std::string> out;
    const std::string problem = for_each_record({dir_.string()}, [&](const SegmentFile&,
                                                                     const Record& r) {
      out.push_back(std::string(type_name(r.type)) + ":" + std::string(r.get(Field::Statement)) +
                    ":" + std::string(r.get(Field::Portal)));
    });
    EXPECT_EQ(problem, "");
    return out;
  }
  fs::path dir_;
};

TEST_F(V3Dir, AnExtendedBindVerifiesAndReadsAsBindThenExecute) {
  SegmentWriter w(0, kKey);
  w.begin(1, w.tail(), 100);
  EXPECT_TRUE(bind(w, 101, 1, "p"));
  // Only a record of the type named is extended.
  EXPECT_FALSE(w.extend_last(RecordType::Execute, Field::Executed, 5));
  std::string bytes = w.take();
  // Taken (being written): the record is closed.
  EXPECT_FALSE(w.extend_last(RecordType::Bind, Field::Executed, 3));
  query(w, 102);
  // Another record came last.
  EXPECT_FALSE(w.extend_last(RecordType::Bind, Field::Executed, 3));
  EXPECT_TRUE(bind(w, 103, 3, ""));
  w.seal(104, true);
  spit(path(1), bytes + w.take());

  const VerifyReport v = verify_dir(dir_.string(), kKey);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 7u);  // start, bind, chain, query, bind, chain, seal
  EXPECT_EQ(events(), (std::vector<std::string>{
                          "segment_start::", "bind:1:p", "execute:2:p",
                          "chain::", "query:9:", "bind:3:", "execute:4:", "chain::", "seal::"}));

  // The extended field altered, its CRC32C left: named.
  std::string data = slurp(path(1));
  const std::size_t at =
      data.find(std::string("\x37\x01\x00\x00\x00"
                            "2",
                            6));
  ASSERT_NE(at, std::string::npos);
  data[at + 5] = '7';
  spit(path(1), data);
  const VerifyReport altered = verify_dir(dir_.string(), kKey);
  EXPECT_FALSE(altered.ok);
  EXPECT_NE(altered.problem.find("record 2"), std::string::npos) << altered.problem;
}

// A record framed where its payload was built (append_in_place, what the gateway uses) has the
// bytes of the same record appended by copy, extended or not, small or grown, over the limit or
// not; and the segment verifies.
TEST_F(V3Dir, ARecordFramedInPlaceIsTheRecordAppendedByCopy) {
  SegmentWriter by_copy(0, kKey), in_place(0, kKey);
  by_copy.begin(1, by_copy.tail(), 100);
  in_place.begin(1, in_place.tail(), 100);
  const auto both = [&](RecordType type, std::int64_t ts, std::string_view text) {
    Payload p;
    p.reset(ts, 0xab);
    p.add(Field::Statement, static_cast<std::uint64_t>(ts)).add_clipped(Field::Text, text);
    EXPECT_EQ(by_copy.append(type, p), in_place.append_in_place(type, p));
  };
  both(RecordType::Bind, 101, "x");
  EXPECT_TRUE(by_copy.extend_last(RecordType::Bind, Field::Executed, 2));
  EXPECT_TRUE(in_place.extend_last(RecordType::Bind, Field::Executed, 2));
  both(RecordType::Query, 102, "SELECT 1");
  both(RecordType::Query, 103, std::string(100'000, 'q'));  // past the buffer's first size
  {  // a payload over the limit: kept as a note either way
    Payload p;
    p.reset(104, 0xab);
    p.add(Field::Portal, std::string(kMaxPayload, 'x'));
    EXPECT_EQ(by_copy.append(RecordType::Execute, p),
              in_place.append_in_place(RecordType::Execute, p));
  }
  both(RecordType::Outcome, 105, "");
  const std::string a = by_copy.take(), b = in_place.take();
  ASSERT_EQ(a.size(), b.size());
  // Record by record: all equal but the segment start (its salt) and the chain record (its MAC).
  std::size_t at = 0, records = 0;
  while (at < a.size()) {
    Record ra, rb;
    std::size_t na = 0, nb = 0;
    ASSERT_EQ(parse_record(std::string_view(a).substr(at), ra, na), ParseStatus::Ok);
    ASSERT_EQ(parse_record(std::string_view(b).substr(at), rb, nb), ParseStatus::Ok);
    ASSERT_EQ(na, nb);
    if (ra.type != RecordType::SegmentStart && ra.type != RecordType::Chain) {
      EXPECT_EQ(a.substr(at, na), b.substr(at, nb)) << "record " << records;
    }
    at += na;
    ++records;
  }
  EXPECT_EQ(records, 7u);  // start, bind, query, query, note, outcome, chain
  in_place.seal(106, true);
  spit(path(1), b + in_place.take());
  const VerifyReport v = verify_dir(dir_.string(), kKey);
  EXPECT_TRUE(v.ok) << v.problem;
}

// The last line of defence: a payload over the format's limit (values are clipped far below it)
// is kept as a record saying so, and the segment stays readable and verifies.
TEST_F(V3Dir, ARecordOverTheLimitIsKeptAsANote) {
  SegmentWriter w(0, kKey);
  w.begin(1, w.tail(), 100);
  Payload p;
  p.reset(101, 0xab);
  p.add(Field::Portal, std::string(kMaxPayload, 'x'));
  w.append(RecordType::Execute, p);
  query(w, 102);
  w.seal(103, true);
  spit(path(1), w.take());
  const VerifyReport v = verify_dir(dir_.string(), kKey);
  EXPECT_TRUE(v.ok) << v.problem;
  std::vector<std::string> reasons;
  for_each_record({dir_.string()}, [&](const SegmentFile&, const Record& r) {
    if (r.type == RecordType::Execute) reasons.emplace_back(r.get(Field::Reason));
  });
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_NE(reasons[0].find("over the format's limit"), std::string::npos) << reasons[0];
  EXPECT_EQ(events().back(), "seal::");
}

// Export names each clipped value's hash for it: a clipped name's as `statement_sha256`, a
// clipped parameter's in `params_sha256`, in step with the parameters (null where whole).
TEST_F(V3Dir, ExportNamesEachHashForItsValue) {
  SegmentWriter w(0, kKey);
  w.begin(1, w.tail(), 100);
  Payload p;
  p.reset(101, 0xab);
  p.add(Field::Statement, 1)
      .add(Field::Portal, "")
      .add_clipped(Field::Name, std::string(kMaxValue + 1, 'n'));
  p.add(Field::Param, "1").add_clipped(Field::Param, std::string(kMaxValue + 1, 'v'));
  p.add(Field::ParamNull, "").add(Field::Param, "4");
  w.append(RecordType::Bind, p);
  // (A record this large closes its batch: the Execute has a record of its own.)
  EXPECT_FALSE(w.extend_last(RecordType::Bind, Field::Executed, 2));
  p.reset(101, 0xab);
  p.add(Field::Statement, 2).add(Field::Portal, "");
  w.append(RecordType::Execute, p);
  w.seal(102, true);
  spit(path(1), w.take());
  std::ostringstream out;
  std::streambuf* const saved = std::cout.rdbuf(out.rdbuf());
  int rc = -1;
  const bool ran = run_tool({"export", "--record-dir", dir_.string(), "--format", "jsonl"}, rc);
  std::cout.rdbuf(saved);
  ASSERT_TRUE(ran);
  EXPECT_EQ(rc, 0);
  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 2u) << out.str().substr(0, 300);
  const std::string& bind = lines[0];
  EXPECT_NE(bind.find("\"statement_sha256\":\""), std::string::npos);
  EXPECT_EQ(bind.find("\"text_sha256\""), std::string::npos);
  const std::size_t at = bind.find("\"params_sha256\":[null,\"");
  ASSERT_NE(at, std::string::npos) << bind.substr(0, 200);
  EXPECT_NE(bind.find("\",null,null]", at), std::string::npos);
  EXPECT_NE(lines[1].find("\"type\":\"execute\""), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("\"statement_seq\":2"), std::string::npos) << lines[1];
}

// Version 2 segments (no record is extended) verify and read as written, and a version 3 segment
// continues their chain.
TEST_F(V3Dir, Version2SegmentsStillVerifyAndAreContinued) {
  SegmentWriter w(0, kKey);
  w.begin(1, w.tail(), 100, 2);
  EXPECT_FALSE(bind(w, 101, 1, "p"));  // version 2 has no executed field
  Payload p;
  p.reset(102, 0xab);
  p.add(Field::Statement, 2).add(Field::Portal, "p");
  w.append(RecordType::Execute, p);
  w.seal(103, false);
  spit(path(1), w.take());
  w.begin(2, w.tail(), 104);
  EXPECT_TRUE(bind(w, 105, 3, "p"));
  w.seal(106, true);
  spit(path(2), w.take());

  const VerifyReport v = verify_dir(dir_.string(), kKey);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.segments, 2u);
  EXPECT_EQ(events(), (std::vector<std::string>{"segment_start::", "bind:1:p", "execute:2:p",
                                                "chain::", "seal::", "segment_start::", "bind:3:p",
                                                "execute:4:p", "chain::", "seal::"}));
}

}  // namespace
}  // namespace pgwarden::recorder
