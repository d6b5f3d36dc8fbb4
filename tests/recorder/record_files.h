// What the recorder's tests share: the chain key, whole-file reads and writes, and the record a
// payload makes when written as the first of a segment.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

#include "recorder/format.h"

namespace pgwarden::recorder::test_files {

inline const std::string kKey = "0123456789abcdef0123456789abcdef";

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
inline void spit(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

// Writes `p` as the first record of a segment and parses it back into `r` (views into `bytes`);
// `size` is its whole length.
inline ParseStatus first_record(RecordType type, const Payload& p, std::string& bytes, Record& r,
                                std::size_t& size, std::string* why = nullptr) {
  SegmentWriter w(0, kKey);
  w.begin(1, w.tail(), 0);
  w.append(type, p);
  bytes = w.take();
  std::string_view rest = bytes;
  const ParseStatus start = parse_record(rest, r, size, why);  // the segment start
  if (start != ParseStatus::Ok) return start;
  rest.remove_prefix(size);
  return parse_record(rest, r, size, why);
}

}  // namespace pgwarden::recorder::test_files
