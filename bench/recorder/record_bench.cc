// Recorder cost per core: building and appending a typical statement record (payload, CRC32C,
// SHA-256 chain link) in memory, and appending + flushing to a segment file with large
// sequential writes as the gateway does. Compare MB/s with the disk's own sequential write rate
// (bench/record_bench.sh measures it with dd in the same run).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "recorder/format.h"

namespace {

using pgwarden::recorder::Field;
using pgwarden::recorder::Payload;
using pgwarden::recorder::RecordType;
using pgwarden::recorder::SegmentWriter;

const std::string kKey(32, 'k');
const std::string kQuery =
    "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";  // pgbench -S, simple protocol

void fill(Payload& p, std::int64_t i) {
  p.reset(1'700'000'000'000'000 + i, 0xabcdef0000000001ull);
  p.add(Field::Statement, static_cast<std::uint64_t>(i)).add_clipped(Field::Text, kQuery);
}

void BM_AppendQueryRecord(benchmark::State& state) {
  SegmentWriter w(0, kKey);
  w.begin(1, {}, 0);
  Payload p;
  std::int64_t i = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    fill(p, ++i);
    w.append(RecordType::Query, p);
    // The chain is computed when the bytes are taken, as the gateway does per write.
    if (w.pending_size() >= (64u << 10)) bytes += w.take().size();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_AppendQueryRecord);

// Append, and write out every 256 KiB (the gateway writes whatever accumulated per loop turn).
void BM_AppendAndFlushToFile(benchmark::State& state) {
  const char* dir = std::getenv("PGW_BENCH_DIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/pgw-record-bench.pwrec";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    state.SkipWithError("cannot create the segment file");
    return;
  }
  SegmentWriter w(0, kKey);
  w.begin(1, {}, 0);
  Payload p;
  std::int64_t i = 0;
  std::size_t bytes = 0;
  off_t offset = 0;
  for (auto _ : state) {
    fill(p, ++i);
    w.append(RecordType::Query, p);
    if (w.pending_size() >= (256u << 10)) {
      const std::string out = w.take();
      const ssize_t n = ::pwrite(fd, out.data(), out.size(), offset);
      if (n != static_cast<ssize_t>(out.size())) {
        state.SkipWithError("write failed");
        break;
      }
      offset += n;
      bytes += static_cast<std::size_t>(n);
      if (offset > (256 << 20)) {  // keep the file bounded
        offset = 0;
      }
    }
  }
  ::fdatasync(fd);
  ::close(fd);
  ::unlink(path.c_str());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_AppendAndFlushToFile)->MinTime(1.0);

}  // namespace
