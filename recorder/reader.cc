#include "recorder/reader.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace pgwarden::recorder {

namespace fs = std::filesystem;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool parse_digits(const std::string& s, std::uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  out = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return true;
}

std::uint64_t field_u64(const Record& r, Field f) {
  std::uint64_t v = 0;
  return parse_digits(std::string(r.get(f)), v) ? v : ~0ull;
}

// A clean shutdown seals every segment, and a gateway restarted after a crash seals what the crash
// left open before it records anything: with no gateway recording into a core, an unsealed segment
// lost its tail.
constexpr const char* kNotSealed =
    "the newest segment is not sealed and no gateway is recording into it: its tail was cut off "
    "(or the gateway stopped abruptly and was not restarted, which seals it)";

// Walks one core's segments, checking everything; stops at the first problem.
struct CoreWalk {
  const std::string& key;
  VerifyReport& report;
  bool live = false;  // a gateway records into this core now: its newest segment is open
  Hash chain{};
  std::uint64_t next_seq = 1;

  bool fail(const std::string& where, const std::string& what) {
    report.ok = false;
    report.problem = where + ": " + what;
    return false;
  }

  bool segment(const SegmentFile& seg, bool last) {
    if (seg.seq != next_seq) {
      return fail(seg.relative, "segment " + std::to_string(next_seq) +
                                    " of this core is missing (found " + std::to_string(seg.seq) +
                                    " instead)");
    }
    ++next_seq;
    ++report.segments;
    const std::string data = read_all(seg.path);
    std::string_view rest = data;
    std::uint64_t offset = 0, number = 0;
    bool sealed = false;
    while (!rest.empty()) {
      const std::string where = seg.relative + ": record " + std::to_string(number + 1) +
                                " at offset " + std::to_string(offset);
      if (sealed) return fail(where, "bytes after the segment's seal");
      Record r;
      std::size_t size = 0;
      std::string why;
      const ParseStatus st = parse_record(rest, r, size, &why);
      if (st == ParseStatus::Incomplete) {
        if (!last) return fail(where, "truncated record in a segment that has a successor");
        if (!live) return fail(where, kNotSealed);
        report.notes.push_back(seg.relative + ": ignored " + std::to_string(rest.size()) +
                               " bytes of a partial last record (being written)");
        break;
      }
      if (st == ParseStatus::Corrupt) return fail(where, why + " (record altered or damaged)");
      if (r.link != link_of(chain)) {
        return fail(where,
                    "hash chain broken: this record, or the one before it, was altered, removed "
                    "or reordered");
      }
      if (number == 0) {
        if (r.type != RecordType::SegmentStart)
          return fail(where, "segment does not begin with a start record");
        if (field_u64(r, Field::Core) != seg.core || field_u64(r, Field::Segment) != seg.seq) {
          return fail(where, "start record names another core or segment (file moved or renamed)");
        }
        const std::string_view prev = r.get(Field::PrevHash);
        if (prev.size() != 32 ||
            !std::equal(prev.begin(), prev.end(), reinterpret_cast<const char*>(chain.data()))) {
          return fail(where, "does not continue the previous segment's hash chain");
        }
      } else if (r.type == RecordType::SegmentStart) {
        return fail(where, "unexpected segment start record");
      }
      if (r.type == RecordType::Seal) {
        const bool final = r.get(Field::Final) == "1";
        const std::string_view mac = r.get(Field::Mac);
        const Hash want = hmac_sha256(key, seal_input(chain, seg.core, seg.seq, number + 1, final));
        if (field_u64(r, Field::Records) != number + 1) {
          return fail(where, "seal counts another number of records");
        }
        if (mac.size() != 32 ||
            !std::equal(mac.begin(), mac.end(), reinterpret_cast<const char*>(want.data()))) {
          return fail(where,
                      "seal does not verify: the segment was altered, or another key sealed it");
        }
        // Sealed as final and followed: the gateway was restarted after a clean shutdown (the
        // successor's start record must continue this chain, checked when it is read).
        if (final && !last) {
          report.notes.push_back(seg.relative + ": the gateway restarted after this segment");
        }
        if (!final && last) {
          return fail(where, "segment sealed for rotation but its successor (segment " +
                                 std::to_string(seg.seq + 1) + ") is missing");
        }
        sealed = true;
      }
      chain = chain_next(chain, rest.substr(0, size));
      rest.remove_prefix(size);
      offset += size;
      ++number;
      ++report.records;
    }
    if (number == 0) {
      if (!last) return fail(seg.relative, "empty segment that has a successor");
      report.notes.push_back(seg.relative + ": empty last segment");
    } else if (!sealed) {
      if (!last)
        return fail(seg.relative, "segment ends without a seal but has a successor (truncated)");
      if (!live) return fail(seg.relative, kNotSealed);
      report.notes.push_back(seg.relative +
                             ": last segment not sealed yet (the gateway is recording into it): "
                             "its records are checked by CRC and chain only");
    }
    return true;
  }
};

}  // namespace

std::string segment_relative_path(unsigned core, std::uint64_t seq) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "core-%02u/%08llu.pwrec", core,
                static_cast<unsigned long long>(seq));
  return buf;
}

std::vector<SegmentFile> list_segments(const std::string& dir) {
  std::vector<SegmentFile> out;
  std::error_code ec;
  for (const auto& core_dir : fs::directory_iterator(dir, ec)) {
    const std::string name = core_dir.path().filename().string();
    std::uint64_t core = 0;
    if (name.rfind("core-", 0) != 0 || !parse_digits(name.substr(5), core) || core > 4096) continue;
    std::error_code ec2;
    for (const auto& f : fs::directory_iterator(core_dir.path(), ec2)) {
      const std::string fname = f.path().filename().string();
      std::uint64_t seq = 0;
      if (fname.size() <= 6 || fname.substr(fname.size() - 6) != ".pwrec" ||
          !parse_digits(fname.substr(0, fname.size() - 6), seq)) {
        continue;
      }
      out.push_back(
          SegmentFile{static_cast<unsigned>(core), seq, f.path().string(), name + "/" + fname});
    }
  }
  std::sort(out.begin(), out.end(), [](const SegmentFile& a, const SegmentFile& b) {
    return a.core != b.core ? a.core < b.core : a.seq < b.seq;
  });
  return out;
}

VerifyReport verify_dir(const std::string& dir, const std::string& key) {
  VerifyReport report;
  const auto segs = list_segments(dir);
  if (segs.empty()) {
    report.ok = false;
    report.problem = dir + ": no segments found";
    return report;
  }
  std::size_t i = 0;
  while (i < segs.size() && report.ok) {
    CoreWalk walk{key, report};
    const unsigned core = segs[i].core;
    walk.live = core_is_live(dir, core);
    for (; i < segs.size() && segs[i].core == core; ++i) {
      const bool last = i + 1 == segs.size() || segs[i + 1].core != core;
      if (!walk.segment(segs[i], last)) break;
    }
  }
  return report;
}

ParseStatus for_each_in(std::string_view data,
                        const std::function<void(const Record&, std::string_view)>& fn,
                        std::size_t& consumed, std::string* why) {
  consumed = 0;
  Record r;
  std::size_t size = 0;
  ParseStatus st;
  while ((st = parse_record(data.substr(consumed), r, size, why)) == ParseStatus::Ok) {
    fn(r, data.substr(consumed, size));
    consumed += size;
  }
  return st;
}

std::string lock_path(const std::string& dir, unsigned core) {
  char name[32];
  std::snprintf(name, sizeof name, "/core-%02u/.lock", core);
  return dir + name;
}

bool core_is_live(const std::string& dir, unsigned core) {
  const int fd = ::open(lock_path(dir, core).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

Resume resume_point(const std::string& dir, unsigned core) {
  Resume out;
  for (const auto& seg : list_segments(dir)) {
    if (seg.core != core) continue;
    out.last_seq = seg.seq;
    out.last_path = seg.path;
    out.last_sealed = false;
    out.last_records = 0;
    std::string why;
    std::size_t consumed = 0;
    const ParseStatus st = for_each_in(
        read_all(seg.path),
        [&](const Record& r, std::string_view bytes) {
          out.last_hash = chain_next(out.last_hash, bytes);
          out.last_sealed = r.type == RecordType::Seal;
          ++out.last_records;
        },
        consumed, &why);
    out.last_valid_bytes = consumed;
    out.zero_tail = 0;
    if (st == ParseStatus::Corrupt) {
      // A crash with records in the page cache only (--record-durability none) can leave the
      // file longer than what reached the disk, the rest zeros: that is a tail to cut, not damage.
      const std::string data = read_all(seg.path);
      if (data.find_first_not_of('\0', consumed) == std::string::npos) {
        out.zero_tail = data.size() - consumed;
        continue;
      }
      out.ok = false;
      out.problem = seg.relative + " at offset " + std::to_string(consumed) + ": " + why +
                    " (run pgwarden verify; move the directory aside to start afresh)";
      return out;
    }
  }
  return out;
}

std::string for_each_record(const std::string& dir,
                            const std::function<void(const SegmentFile&, const Record&)>& fn) {
  std::string problem;
  for (const auto& seg : list_segments(dir)) {
    std::string why;
    std::size_t consumed = 0;
    const ParseStatus st = for_each_in(
        read_all(seg.path), [&](const Record& r, std::string_view) { fn(seg, r); }, consumed, &why);
    if (st == ParseStatus::Corrupt && problem.empty()) problem = seg.relative + ": " + why;
  }
  return problem;
}

}  // namespace pgwarden::recorder
