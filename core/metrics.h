// Counters and histograms a worker keeps for /metrics: written by the core that owns them,
// read by the admin thread (relaxed atomics; a scrape may see a histogram mid-update, off by
// the observation in flight).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace pgwarden::core {

class Counter {
 public:
  void operator++() noexcept { add(1); }
  void operator--() noexcept { add(~std::uint64_t{0}); }
  void add(std::uint64_t n) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void set(std::uint64_t n) noexcept { v_.store(n, std::memory_order_relaxed); }
  std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// Upper bounds of a histogram's buckets, in nanoseconds (the last bucket, +Inf, is implicit).
inline constexpr std::size_t kBuckets = 17;
using Bounds = std::array<std::int64_t, kBuckets>;
// Statement and I/O latencies: 25 µs to 10 s.
inline constexpr Bounds kLatencyBounds = {
    25'000,      50'000,      100'000,       250'000,       500'000,       1'000'000,
    2'500'000,   5'000'000,   10'000'000,    25'000'000,    50'000'000,    100'000'000,
    250'000'000, 500'000'000, 1'000'000'000, 2'500'000'000, 10'000'000'000};
// Waits for people (approvals): 1 s to 1 h.
inline constexpr Bounds kWaitBounds = {
    1'000'000'000,     2'000'000'000,    5'000'000'000,     10'000'000'000,    15'000'000'000,
    30'000'000'000,    60'000'000'000,   120'000'000'000,   180'000'000'000,   300'000'000'000,
    600'000'000'000,   900'000'000'000,  1'200'000'000'000, 1'800'000'000'000, 2'400'000'000'000,
    3'000'000'000'000, 3'600'000'000'000};

class Histogram {
 public:
  explicit constexpr Histogram(const Bounds& bounds) noexcept : bounds_(&bounds) {}
  // `n` observations of `ns` each.
  void observe(std::int64_t ns, std::uint64_t n = 1) noexcept {
    std::size_t i = 0;
    while (i < kBuckets && ns > (*bounds_)[i]) ++i;
    buckets_[i].add(n);
    sum_ns_.add(static_cast<std::uint64_t>(ns < 0 ? 0 : ns) * n);
  }
  std::uint64_t count() const noexcept {
    std::uint64_t c = 0;
    for (const Counter& b : buckets_) c += b.get();
    return c;
  }
  // Prometheus text: NAME_bucket{LABELS,le="..."} cumulative, NAME_sum (seconds), NAME_count.
  // `labels` is e.g. core="0" (may be empty).
  void render(std::string& out, std::string_view name, std::string_view labels) const;

 private:
  const Bounds* bounds_;
  std::array<Counter, kBuckets + 1> buckets_{};
  Counter sum_ns_;
};

// The # HELP and # TYPE lines of a metric.
void metric_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help);

}  // namespace pgwarden::core
