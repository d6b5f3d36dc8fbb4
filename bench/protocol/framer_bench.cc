// Framing cost per byte of a pgbench-like stream, whole and split into 16 KiB receive chunks.
#include <benchmark/benchmark.h>

#include <string>

#include "protocol/framer.h"

namespace pgwarden::protocol {
namespace {

std::basic_string<std::byte> stream_of_rows(std::size_t total) {
  std::basic_string<std::byte> out;
  const std::string body = std::string("\0\3\0\0\0\5hello\0\0\0\4abcd\0\0\0\x02xy", 23);
  while (out.size() < total) {
    out.push_back(std::byte{'D'});
    const auto len = static_cast<std::uint32_t>(body.size() + 4);
    for (int s = 24; s >= 0; s -= 8) out.push_back(std::byte(len >> s));
    out.append(reinterpret_cast<const std::byte*>(body.data()), body.size());
  }
  return out;
}

void BM_Framer_DataRows(benchmark::State& state) {
  const auto stream = stream_of_rows(1 << 20);
  const std::size_t chunk = static_cast<std::size_t>(state.range(0));
  Framer framer(Side::Backend, 1 << 30, true);
  std::size_t messages = 0;
  for (auto _ : state) {
    for (std::size_t pos = 0; pos < stream.size(); pos += chunk) {
      const std::size_t n = std::min(chunk, stream.size() - pos);
      framer.feed({stream.data() + pos, n}, [&](const Fragment& f) {
        messages += f.last;
        benchmark::DoNotOptimize(f.bytes.data());
        return Next::Continue;
      });
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * stream.size()));
  benchmark::DoNotOptimize(messages);
}
BENCHMARK(BM_Framer_DataRows)->Arg(16384)->Arg(1 << 20);

}  // namespace
}  // namespace pgwarden::protocol
