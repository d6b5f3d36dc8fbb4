// Offline readers of a record directory (synchronous file reads; never on the gateway's data
// path): segment discovery, integrity verification, and record iteration for the tools.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "recorder/format.h"

namespace pgwarden::recorder {

struct SegmentFile {
  unsigned core = 0;
  std::uint64_t seq = 0;
  std::string path;      // full path
  std::string relative;  // core-NN/SSSSSSSS.pwrec
  std::string instance;  // the record directory it came from, when several are read together
};

// Segments under `dir`, ordered by core then sequence. Files not named like segments are ignored.
std::vector<SegmentFile> list_segments(const std::string& dir);
std::string segment_relative_path(unsigned core, std::uint64_t seq);

struct VerifyReport {
  bool ok = true;
  std::string problem;             // the first problem found, naming file, record and offset
  std::vector<std::string> notes;  // tolerated facts (an unsealed last segment, a partial tail)
  std::uint64_t segments = 0;
  std::uint64_t records = 0;
};

// Checks CRCs, record links, the chain (version 1: per record; 2: per batch, naming the first
// record that differs from its batch's chain record) across segments, segment sequence and seals.
// The newest segment of a core may be unsealed only while a gateway records into it (holds its
// lock).
VerifyReport verify_dir(const std::string& dir, const std::string& key);

// The file a gateway holds locked (flock) in each core's directory while it records there.
std::string lock_path(const std::string& dir, unsigned core);
// True when a gateway holds that lock now.
bool core_is_live(const std::string& dir, unsigned core);

// Where a gateway appends after a restart: the state at the end of a core's last segment.
struct Resume {
  Resume() : last_tail(32, '\0') {}
  std::uint64_t last_seq = 0;          // 0: the core has no segment yet
  bool last_sealed = true;             // false: the gateway stopped abruptly; seal it on recovery
  int version = 0;                     // of the last segment
  std::uint64_t last_records = 0;      // complete records (version 2: chained) in it
  std::uint64_t last_valid_bytes = 0;  // their length: a partial tail beyond is cut off
  std::uint64_t zero_tail = 0;         // of which zeros (the file outgrew what reached the disk)
  std::string last_chain;  // the chain value after them (version 1: SHA-256, 2: the last MAC)
  std::string last_tail;   // what the last sealed segment's successor names (32 zeros: none)
  std::string last_path;
  bool ok = true;
  std::string problem;
};
// Before sealing an open segment, its batches are checked with `key`: what does not verify is not
// sealed (ok false); nor is an open version 1 segment, which no key protects.
Resume resume_point(const std::string& dir, unsigned core, const std::string& key);

// Calls fn(record, its bytes) for each complete record at the front of `data`; returns how the
// walk ended: Incomplete at the end of the data or at a partial record, or Corrupt (with `why`).
// `consumed` is the length of the records walked.
ParseStatus for_each_in(std::string_view data,
                        const std::function<void(const Record&, std::string_view)>& fn,
                        std::size_t& consumed, std::string* why = nullptr);

// A bind record that names the Execute run right after it (version 3, Field::Executed) stands for
// both: fn is called with the bind, then with that execute as a record of its own (its time and
// session the bind's; its statement_seq and portal), as versions 1 and 2 recorded it. Any other
// record: fn is called with it.
void each_event(const Record& r, const std::function<void(const Record&)>& fn);

// Calls `fn` for every readable record of every core of every directory (several gateways'
// recordings read together), ordered by time: each core's records in the order written, merged
// by timestamp. With more than one directory, each SegmentFile names its directory as its
// instance. A partial record at the end of a segment ends that segment; a corrupt one ends it
// too and is reported via the return value (the first problem, or empty). Holds one segment per
// core and directory in memory at a time. Bind records that stand for their Execute too are
// passed as both (each_event).
std::string for_each_record(const std::vector<std::string>& dirs,
                            const std::function<void(const SegmentFile&, const Record&)>& fn);

}  // namespace pgwarden::recorder
