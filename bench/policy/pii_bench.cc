// PII detector scan throughput per core on realistic row payloads, clean and PII-dense, against a
// memchr scan of the same bytes in the same run (the raw memory-speed reference).
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "policy/pii.h"

namespace {

using namespace pgwarden::policy;

// Rows of an orders table as text values: id, customer, status, amount, timestamps, notes.
std::vector<std::string> rows(bool pii, std::size_t count) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < count; ++i) {
    std::string r = std::to_string(100000 + i) + "|customer " + std::to_string(i % 977) +
                    "|shipped|" + std::to_string(i % 500) +
                    ".99|2026-11-21 14:50:" + std::to_string(10 + i % 50) + ".123456+00|order " +
                    std::to_string(i) + " packed in warehouse 7, carrier ups, tracking 1Z999AA1" +
                    std::to_string(1000000 + i);
    if (pii) {
      r += "|bob" + std::to_string(i) + "@example.com|4111 1111 1111 1111|123-45-6789|+14155552671";
    }
    out.push_back(std::move(r));
  }
  return out;
}

void scan_rows(benchmark::State& state, bool pii) {
  auto detectors = *PiiDetectors::build();
  PiiScanner scanner;
  std::vector<PiiFinding> found;
  const auto data = rows(pii, 2048);
  std::size_t bytes = 0;
  for (const auto& r : data) bytes += r.size();
  for (auto _ : state) {
    std::size_t n = 0;
    for (const auto& r : data) {
      scanner.scan(r, *detectors, found);
      n += found.size();
    }
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes * state.iterations()));
}

void BM_PiiScanCleanRows(benchmark::State& state) {
  scan_rows(state, false);
}
void BM_PiiScanPiiDenseRows(benchmark::State& state) {
  scan_rows(state, true);
}
BENCHMARK(BM_PiiScanCleanRows);
BENCHMARK(BM_PiiScanPiiDenseRows);

// The same clean rows concatenated and scanned once (block mode over a whole DataRow batch).
void BM_PiiScanCleanBlock(benchmark::State& state) {
  auto detectors = *PiiDetectors::build();
  PiiScanner scanner;
  std::vector<PiiFinding> found;
  std::string block;
  for (const auto& r : rows(false, 2048)) block += r + '\n';
  for (auto _ : state) {
    scanner.scan(block, *detectors, found);
    benchmark::DoNotOptimize(found.size());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(block.size() * state.iterations()));
}
BENCHMARK(BM_PiiScanCleanBlock);

// Reference: memchr for a byte that is not there, over the same clean bytes.
void BM_MemchrCleanBlock(benchmark::State& state) {
  std::string block;
  for (const auto& r : rows(false, 2048)) block += r + '\n';
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::memchr(block.data(), '\x07', block.size()));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(block.size() * state.iterations()));
}
BENCHMARK(BM_MemchrCleanBlock);

}  // namespace
