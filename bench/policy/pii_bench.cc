// PII detector scan throughput per core on realistic row payloads, clean and PII-dense, against a
// memchr scan of the same bytes in the same run (the raw memory-speed reference).
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "policy/masking.h"
#include "policy/phone.h"
#include "policy/pii.h"
#include "policy/rules.h"

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

// The per-value gate alone (vectorised, and its scalar definition), per value of each kind the
// clean rows above hold: short words, ids, a digit-rich note that reaches the shape checks, and
// (3) a 1 KiB paragraph of prose with a few numbers in it.
void gate_values(benchmark::State& state, bool (*gate)(std::string_view) noexcept) {
  std::vector<std::string> values;
  for (std::size_t i = 0; i < 1024; ++i) {
    switch (state.range(0)) {
      case 0:
        values.push_back("customer " + std::to_string(i % 977));
        break;
      case 1:
        values.push_back(std::to_string(100000 + i));
        break;
      case 2:
        values.push_back("order " + std::to_string(i) +
                         " packed in warehouse 7, carrier ups, tracking 1Z999AA1" +
                         std::to_string(1000000 + i));
        break;
      default: {
        std::string text;
        while (text.size() < 1024) {
          text += "The customer called on " + std::to_string(1 + i % 28) + " March about order " +
                  std::to_string(4000 + i) +
                  ", which arrived late; the replacement ships from the Leeds depot in 3 days. ";
        }
        values.push_back(std::move(text));
      }
    }
  }
  std::size_t bytes = 0;
  for (const auto& v : values) bytes += v.size();
  for (auto _ : state) {
    std::size_t n = 0;
    for (const auto& v : values) n += gate(v);
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(values.size() * state.iterations()));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes * state.iterations()));
}
void BM_PiiGate(benchmark::State& state) {
  gate_values(state, &may_hold_builtin_pii);
}
void BM_PiiGateScalar(benchmark::State& state) {
  gate_values(state, &detail::may_hold_builtin_pii_scalar);
}
BENCHMARK(BM_PiiGate)->Arg(0)->Arg(1)->Arg(2)->Arg(3);
BENCHMARK(BM_PiiGateScalar)->Arg(0)->Arg(1)->Arg(2)->Arg(3);

// libphonenumber's cost per phone number nobody asked about before (the detectors keep recent
// answers per core): international, and national for the default regions.
void BM_PhoneValidateDistinct(benchmark::State& state) {
  const bool international = state.range(0) == 1;
  std::uint64_t n = 0;
  for (auto _ : state) {
    const std::string number = international ? "+1415555" + std::to_string(1000 + n % 9000)
                                             : "020 7946 " + std::to_string(1000 + n % 9000);
    benchmark::DoNotOptimize(pgwarden::policy::phone_valid_uncached(
        number, international, pgwarden::policy::default_phone_regions()));
    ++n;
  }
}
BENCHMARK(BM_PhoneValidateDistinct)->Arg(1)->Arg(0);

// The data path itself: whole DataRow messages of an orders table (id int4, customer text, status
// text, amount numeric, created timestamptz, note text, and for the dense case email, card, ssn
// and phone text columns) through the Masker under a profile with every detector, as the session
// runs it. Bytes are the DataRow bytes.
using Msg = std::basic_string<std::byte>;

void put_u16(Msg& m, std::uint16_t v) {
  m.push_back(static_cast<std::byte>(v >> 8));
  m.push_back(static_cast<std::byte>(v & 0xff));
}
void put_u32(Msg& m, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) m.push_back(static_cast<std::byte>((v >> s) & 0xff));
}
Msg message(char type, const Msg& body) {
  Msg m;
  m.push_back(static_cast<std::byte>(type));
  put_u32(m, static_cast<std::uint32_t>(body.size() + 4));
  return m + body;
}

void mask_rows(benchmark::State& state, bool pii) {
  const auto policy = *Policy::parse(
      R"({"masking": [{"name": "all", "detectors": {"card_number": "partial", "ssn": "redact",
          "email": "hash", "phone": "partial", "iban": "partial"}}]})",
      "bench");
  const MaskProfile& profile = policy->masking()[0];
  std::vector<std::pair<std::string, std::uint32_t>> cols = {{"id", 23},        {"customer", 25},
                                                             {"status", 25},    {"amount", 1700},
                                                             {"created", 1184}, {"note", 25}};
  if (pii) {
    for (const char* c : {"email", "card", "ssn", "phone"}) cols.emplace_back(c, 25);
  }
  Msg t;
  put_u16(t, static_cast<std::uint16_t>(cols.size()));
  for (const auto& [name, type] : cols) {
    t.append(reinterpret_cast<const std::byte*>(name.c_str()), name.size() + 1);
    put_u32(t, 0);
    put_u16(t, 0);
    put_u32(t, type);
    put_u16(t, 0xffff);
    put_u32(t, 0xffffffff);
    put_u16(t, 0);
  }
  ResultPlan plan;
  build_plan(profile, nullptr, message('T', t), "", plan);
  std::vector<Msg> data;
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < 2048; ++i) {
    std::vector<std::string> v = {std::to_string(100000 + i),
                                  "customer " + std::to_string(i % 977),
                                  "shipped",
                                  std::to_string(i % 500) + ".99",
                                  "2026-11-21 14:50:" + std::to_string(10 + i % 50) + ".123456+00",
                                  "order " + std::to_string(i) +
                                      " packed in warehouse 7, carrier ups, tracking 1Z999AA1" +
                                      std::to_string(1000000 + i)};
    if (pii) {
      v.push_back("bob" + std::to_string(i) + "@example.com");
      v.push_back("4111 1111 1111 1111");
      v.push_back("123-45-6789");
      v.push_back("+14155552671");
    }
    Msg b;
    put_u16(b, static_cast<std::uint16_t>(v.size()));
    for (const auto& x : v) {
      put_u32(b, static_cast<std::uint32_t>(x.size()));
      b.append(reinterpret_cast<const std::byte*>(x.data()), x.size());
    }
    data.push_back(message('D', b));
    bytes += data.back().size();
  }
  Masker masker(std::string(32, 'k'));
  Msg out;
  for (auto _ : state) {
    std::size_t changed = 0;
    for (const Msg& d : data) changed += masker.mask_row(profile, plan, d, out);
    benchmark::DoNotOptimize(changed);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes * state.iterations()));
}

void BM_MaskDataRowsClean(benchmark::State& state) {
  mask_rows(state, false);
}
void BM_MaskDataRowsPiiDense(benchmark::State& state) {
  mask_rows(state, true);
}
BENCHMARK(BM_MaskDataRowsClean);
BENCHMARK(BM_MaskDataRowsPiiDense);

}  // namespace
