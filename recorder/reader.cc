#include "recorder/reader.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

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

std::string_view bytes_of(const Mac& m) {
  return std::string_view(reinterpret_cast<const char*>(m.data()), m.size());
}
std::string_view bytes_of(const Hash& h) {
  return std::string_view(reinterpret_cast<const char*>(h.data()), h.size());
}

// Walks one core's segments, checking everything; stops at the first problem.
struct CoreWalk {
  const std::string& key;
  VerifyReport& report;
  bool live = false;  // a gateway records into this core now: its newest segment is open
  std::string tail = std::string(32, '\0');  // what the next segment's start must name
  std::uint64_t next_seq = 1;
  bool v2_seen = false;  // a version 2 segment came before: version 1 may not follow

  bool fail(const std::string& where, const std::string& what) {
    report.ok = false;
    report.problem = where + ": " + what;
    return false;
  }

  // The state of one segment's walk.
  struct Walk {
    int version = 0;
    Hash chain_v1{};
    Mac chain{};
    ChainMac mac;
    std::uint64_t batch = 0;
    std::uint64_t batch_first = 1;  // record number of the open batch's first record
    std::string crcs;               // of the open batch's records, as their headers say
    std::size_t batch_offset = 0;   // where the open batch begins in the file
  };

  // A version 2 chain record closing the open batch: its list against the records' headers
  // (naming the first that differs), then its MAC.
  bool close_batch(const SegmentFile& seg, std::string_view data, std::size_t offset,
                   std::uint64_t number, const Record& r, std::string_view bytes, Walk& w) {
    const std::string where = seg.relative + ": record " + std::to_string(number) + " at offset " +
                              std::to_string(offset);
    const std::string_view listed = r.get(Field::Crcs);
    const std::string_view mac = r.get(Field::Mac);
    if (listed.size() % 4 != 0 || mac.size() != 16 || bytes.substr(bytes.size() - 16) != mac) {
      return fail(where, "malformed chain record (record altered or damaged)");
    }
    const std::size_t n = std::min(listed.size(), w.crcs.size()) / 4;
    for (std::size_t i = 0; i <= n; ++i) {
      if (i < n && listed.substr(i * 4, 4) == std::string_view(w.crcs).substr(i * 4, 4)) continue;
      if (i == n && listed.size() == w.crcs.size()) break;
      const std::uint64_t at = w.batch_first + i;
      return fail(seg.relative + ": record " + std::to_string(at),
                  at == number ? "hash chain broken: the batch this chain record closes lost "
                                 "records (removed or moved)"
                               : "hash chain broken: this record is not the one recorded here "
                                 "(altered, removed, inserted or reordered)");
    }
    if (field_u64(r, Field::Batch) != w.batch + 1 || field_u64(r, Field::Records) != n) {
      return fail(where, "hash chain broken: chain record out of order (batch " +
                             std::to_string(w.batch + 1) + " expected)");
    }
    w.mac.start(w.batch + 1);
    w.mac.update(bytes_of(w.chain));
    w.mac.update(data.substr(w.batch_offset, offset - w.batch_offset));
    w.mac.update(bytes.substr(kHeaderSize, bytes.size() - kHeaderSize - 16));
    const Mac want = w.mac.finish();
    if (bytes_of(want) != mac) {
      return fail(seg.relative + ": records " + std::to_string(w.batch_first) + " to " +
                      std::to_string(number),
                  "hash chain broken: the batch's MAC does not verify: one of its records was "
                  "altered keeping its CRC32C, or another key wrote it");
    }
    w.chain = want;
    ++w.batch;
    w.crcs.clear();
    w.batch_first = number + 1;
    w.batch_offset = offset + bytes.size();
    return true;
  }

  bool check_seal(const std::string& where, const SegmentFile& seg, const Record& r,
                  std::string_view bytes, std::uint64_t number, bool last, const Walk& w) {
    const bool final = r.get(Field::Final) == "1";
    const std::string_view mac = r.get(Field::Mac);
    if (w.version >= 2 && !w.crcs.empty()) {
      return fail(where, "hash chain broken: records before the seal are in no batch");
    }
    if (w.version >= 2 && (mac.size() != 32 || bytes.substr(bytes.size() - 32) != mac)) {
      return fail(where, "malformed seal (record altered or damaged)");
    }
    const Hash want =
        w.version == 1
            ? hmac_sha256(key, seal_input(w.chain_v1, seg.core, seg.seq, number, final))
            : hmac_sha256(
                  key, seal_input_v2(w.chain, seg.core, seg.seq,
                                     bytes.substr(kHeaderSize, bytes.size() - kHeaderSize - 32)));
    if (field_u64(r, Field::Records) != number) {
      return fail(where, "seal counts another number of records");
    }
    if (mac != bytes_of(want)) {
      return fail(where, "seal does not verify: the segment was altered, or another key sealed it");
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
    return true;
  }

  bool segment(const SegmentFile& seg, bool last) {
    if (seg.seq != next_seq) {
      return fail(seg.relative, "segment " + std::to_string(next_seq) +
                                    " of this core is missing (found " + std::to_string(seg.seq) +
                                    " instead)");
    }
    ++next_seq;
    ++report.segments;
    return walk(seg, read_all(seg.path), last);
  }

  // One segment's bytes (a whole file, or the part of an open one that recovery would seal).
  bool walk(const SegmentFile& seg, std::string_view data, bool last) {
    std::string_view rest = data;
    std::uint64_t offset = 0, number = 0;
    bool sealed = false;
    Walk w;
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
      const std::string_view bytes = rest.substr(0, size);
      ++number;
      if (number == 1) {
        if (r.type != RecordType::SegmentStart)
          return fail(where, "segment does not begin with a start record");
        const std::uint64_t version = field_u64(r, Field::Version);
        if (version < 1 || version > static_cast<std::uint64_t>(kFormatVersion)) {
          return fail(where, "unknown format version " + std::string(r.get(Field::Version)));
        }
        w.version = static_cast<int>(version);
        if (w.version == 1 && v2_seen) {
          return fail(where,
                      "a version 1 segment after version 2 ones: not written by this gateway "
                      "(version 1 has no keyed chain; added or restored)");
        }
        v2_seen = v2_seen || w.version >= 2;
        if (field_u64(r, Field::Core) != seg.core || field_u64(r, Field::Segment) != seg.seq) {
          return fail(where, "start record names another core or segment (file moved or renamed)");
        }
        if (r.get(Field::PrevHash) != tail) {
          return fail(where, "does not continue the previous segment's chain");
        }
        if (w.version == 1) {
          if (tail.size() != 32)
            return fail(where, "does not continue the previous segment's chain");
          std::memcpy(w.chain_v1.data(), tail.data(), 32);
        }
        if (w.version >= 2) {
          if (r.get(Field::Salt).size() != 16) return fail(where, "start record without a salt");
          w.mac.set_key(key, seg.core, seg.seq, r.get(Field::Salt));
        }
      } else if (r.type == RecordType::SegmentStart) {
        return fail(where, "unexpected segment start record");
      }
      const std::uint64_t want_link = w.version == 1 ? link_of(w.chain_v1) : link_of(w.chain);
      if (r.link != want_link) {
        return fail(where,
                    w.version == 1
                        ? "hash chain broken: this record, or the one before it, was altered, "
                          "removed or reordered"
                        : "hash chain broken: this record belongs to another batch (moved or "
                          "reordered)");
      }
      if (r.type == RecordType::Seal) {
        if (!check_seal(where, seg, r, bytes, number, last, w)) return false;
        sealed = true;
      }
      if (w.version == 1) {
        w.chain_v1 = chain_next(w.chain_v1, bytes);
        if (sealed) tail = std::string(bytes_of(w.chain_v1));
      } else if (r.type == RecordType::Chain) {
        if (!close_batch(seg, data, offset, number, r, bytes, w)) return false;
      } else if (sealed) {
        tail = std::string(r.get(Field::Mac));
      } else {
        w.crcs.append(bytes.substr(5, 4));
      }
      rest.remove_prefix(size);
      offset += size;
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
                             "its records are checked by CRC and chain only" +
                             (w.crcs.empty() ? std::string()
                                             : "; the last " + std::to_string(w.crcs.size() / 4) +
                                                   " are not chained yet (being written)"));
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
          SegmentFile{static_cast<unsigned>(core), seq, f.path().string(), name + "/" + fname, {}});
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

Resume resume_point(const std::string& dir, unsigned core, const std::string& key) {
  Resume out;
  bool v2_seen = false;
  std::string tail_before;  // what the last segment's start must name
  for (const auto& seg : list_segments(dir)) {
    if (seg.core != core) continue;
    out.last_seq = seg.seq;
    out.last_path = seg.path;
    out.last_sealed = false;
    out.last_records = 0;
    out.last_valid_bytes = 0;
    out.version = 0;
    out.last_chain.clear();
    tail_before = out.last_tail;
    Hash chain_v1{};
    if (out.last_tail.size() == 32) std::memcpy(chain_v1.data(), out.last_tail.data(), 32);
    std::uint64_t records = 0;
    std::string why;
    std::size_t consumed = 0;
    const std::string data = read_all(seg.path);
    const ParseStatus st = for_each_in(
        data,
        [&](const Record& r, std::string_view bytes) {
          ++records;
          if (r.type == RecordType::SegmentStart && records == 1) {
            out.version = field_u64(r, Field::Version) == 1 ? 1 : 2;
            if (out.version == 1 && v2_seen) out.ok = false;
            v2_seen = v2_seen || out.version == 2;
          }
          if (out.version == 1) {
            // Version 1 (a gateway before the upgrade stopped abruptly): every record is chained.
            chain_v1 = chain_next(chain_v1, bytes);
            out.last_chain = std::string(bytes_of(chain_v1));
          } else if (r.type == RecordType::Chain) {
            out.last_chain = std::string(r.get(Field::Mac));
          } else if (r.type != RecordType::Seal) {
            return;  // complete only once its batch is chained
          }
          out.last_sealed = r.type == RecordType::Seal;
          if (out.last_sealed) {
            out.last_tail = out.version == 1 ? out.last_chain : std::string(r.get(Field::Mac));
          }
          out.last_records = records;
          out.last_valid_bytes =
              static_cast<std::uint64_t>(bytes.data() + bytes.size() - data.data());
        },
        consumed, &why);
    out.zero_tail = 0;
    if (!out.ok) {
      out.problem = seg.relative +
                    ": a version 1 segment after version 2 ones: not written by this gateway (run "
                    "pgwarden verify; move the directory aside to start afresh)";
      return out;
    }
    if (st == ParseStatus::Corrupt) {
      // A crash with records in the page cache only (--record-durability none) can leave the
      // file longer than what reached the disk, the rest zeros: that is a tail to cut, not damage.
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
  if (out.last_seq == 0 || out.last_sealed || out.last_records == 0) return out;
  // An open segment is sealed on recovery: the seal vouches only for what the keyed chain does.
  const SegmentFile last{
      core, out.last_seq, out.last_path, segment_relative_path(core, out.last_seq), {}};
  if (out.version == 1) {
    out.ok = false;
    out.problem = last.relative +
                  ": a version 1 segment left open by an abrupt stop: this version does not seal "
                  "records no key protects; run the version that wrote it once to seal it, or "
                  "move the directory aside";
    return out;
  }
  VerifyReport report;
  CoreWalk walk{key, report};
  walk.live = true;
  walk.tail = tail_before;
  walk.next_seq = out.last_seq;
  if (!walk.walk(last, std::string_view(read_all(last.path)).substr(0, out.last_valid_bytes),
                 true)) {
    out.ok = false;
    out.problem = report.problem +
                  " (the open segment does not verify: not sealed; run pgwarden verify, move the "
                  "directory aside to start afresh)";
  }
  return out;
}

namespace {

// One core of one directory: its segments in order, the one being read, and its next record
// (parsed in place: a stream holds one segment's bytes and one record, never a segment's worth
// of parsed records).
struct Stream {
  std::vector<SegmentFile> segs;
  std::size_t next = 0;
  std::string data;
  std::size_t off = 0;
  Record head;  // views into `data`
  const SegmentFile* seg = nullptr;
};

// Moves the stream to its next record, into the next segments as needed; false at its end.
bool advance(Stream& s, std::string& problem) {
  for (;;) {
    if (s.seg != nullptr && s.off < s.data.size()) {
      std::size_t size = 0;
      std::string why;
      const ParseStatus st =
          parse_record(std::string_view(s.data).substr(s.off), s.head, size, &why);
      if (st == ParseStatus::Ok) {
        s.off += size;
        return true;
      }
      // A partial record ends the segment (an open one's tail); a corrupt one ends it too.
      if (st == ParseStatus::Corrupt && problem.empty()) {
        problem =
            (s.seg->instance.empty() ? "" : s.seg->instance + "/") + s.seg->relative + ": " + why;
      }
    }
    if (s.next >= s.segs.size()) return false;
    s.seg = &s.segs[s.next++];
    s.data = read_all(s.seg->path);
    s.off = 0;
  }
}

}  // namespace

void each_event(const Record& r, const std::function<void(const Record&)>& fn) {
  fn(r);
  if (r.type != RecordType::Bind) return;
  const std::string_view executed = r.get(Field::Executed);
  if (executed.empty()) return;
  Record e;
  e.type = RecordType::Execute;
  e.ts_us = r.ts_us;
  e.session = r.session;
  e.link = r.link;
  e.fields = {{Field::Statement, executed}, {Field::Portal, r.get(Field::Portal)}};
  fn(e);
}

std::string for_each_record(const std::vector<std::string>& dirs,
                            const std::function<void(const SegmentFile&, const Record&)>& fn) {
  std::string problem;
  // The same directory named twice (or spelled two ways) is read once.
  std::vector<std::string> unique;
  std::set<std::string> seen;
  for (const std::string& dir : dirs) {
    std::error_code ec;
    const std::string canon = fs::weakly_canonical(dir, ec).string();
    if (seen.insert(ec ? dir : canon).second) unique.push_back(dir);
  }
  // Built whole before any is read: records point into each stream's own buffer.
  std::vector<Stream> streams;
  for (const std::string& dir : unique) {
    for (SegmentFile& seg : list_segments(dir)) {
      if (unique.size() > 1) seg.instance = dir;
      if (streams.empty() || streams.back().segs.back().core != seg.core ||
          streams.back().segs.back().instance != seg.instance) {
        streams.emplace_back();
      }
      streams.back().segs.push_back(std::move(seg));
    }
  }
  std::vector<Stream*> live;
  for (Stream& s : streams) {
    if (advance(s, problem)) live.push_back(&s);
  }
  while (!live.empty()) {
    // The earliest record at the front of any stream (streams are few: cores x directories).
    std::size_t best = 0;
    for (std::size_t i = 1; i < live.size(); ++i) {
      if (live[i]->head.ts_us < live[best]->head.ts_us) best = i;
    }
    Stream& s = *live[best];
    each_event(s.head, [&](const Record& r) { fn(*s.seg, r); });
    if (!advance(s, problem)) live.erase(live.begin() + static_cast<std::ptrdiff_t>(best));
  }
  return problem;
}

}  // namespace pgwarden::recorder
