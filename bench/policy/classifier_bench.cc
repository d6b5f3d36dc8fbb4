// Policy cost per statement: the pre-filter fast path (a plain read), a cached decision, and the
// parse path (libpg_query + tree walk) for typical statements under 1 KB.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "policy/copy_rows.h"
#include "policy/output_reads.h"
#include "policy/rules.h"

namespace {

using namespace pgwarden::policy;

const char* kPolicy = R"({"rules": [{"name": "agents",
  "deny": ["drop", "truncate", "delete_without_where", "update_without_where",
           "tautological_where", "copy_program", "dangerous_function", "dynamic_sql",
           "role_change", "write_in_cte", "explain_analyze_write"],
  "require_approval": ["alter"]}]})";

struct Fixture {
  std::shared_ptr<const Policy> policy = *Policy::parse(kPolicy, "bench");
  const Rule* rule = policy->match("x", {});
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// pgbench -S: no keyword of anything but a read, so no parse.
void BM_PrefilterNegative(benchmark::State& state) {
  PolicyEngine e;
  const std::string sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
  for (auto _ : state) {
    benchmark::DoNotOptimize(e.judge(*fixture().policy, fixture().rule, sql).action);
  }
}
BENCHMARK(BM_PrefilterNegative);

// pgbench tpcb-like UPDATE, judged once and then served from the per-core cache.
void BM_CachedDecision(benchmark::State& state) {
  PolicyEngine e;
  const std::string sql = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2";
  for (auto _ : state) {
    benchmark::DoNotOptimize(e.judge(*fixture().policy, fixture().rule, sql).action);
  }
}
BENCHMARK(BM_CachedDecision);

const char* kParsed[] = {
    "UPDATE pgbench_accounts SET abalance = abalance + 4512 WHERE aid = 83201",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 83201, 4512, "
    "CURRENT_TIMESTAMP)",
    "WITH gone AS (DELETE FROM orders WHERE created_at < now() - interval '90 days' RETURNING id) "
    "SELECT count(*) FROM gone",
    "SELECT o.id, c.name, sum(l.amount) FROM orders o JOIN customers c ON c.id = o.customer_id "
    "JOIN lines l ON l.order_id = o.id WHERE o.created_at > now() - interval '1 day' AND "
    "c.country IN ('DE', 'FR', 'NL') GROUP BY o.id, c.name HAVING sum(l.amount) > 100 ORDER BY 3 "
    "DESC LIMIT 50 FOR UPDATE OF o",
    "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM orders; IF n > 0 THEN UPDATE orders "
    "SET "
    "note = 'x' WHERE id = 1; END IF; END $$",
};

// The parse path without the cache: every iteration parses and walks.
void BM_ParsePath(benchmark::State& state) {
  Classifier c;
  const std::string sql = kParsed[state.range(0)];
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        c.analyze_parsed(sql, fixture().policy->dangerous_functions()).classes);
  }
  state.SetLabel(std::to_string(sql.size()) + " bytes");
}
BENCHMARK(BM_ParsePath)->DenseRange(0, 4);

// The statements of the test corpus (all under 1 KB).
std::vector<std::string> corpus_statements() {
  std::vector<std::string> corpus;
  std::ifstream in(std::string(PGW_BENCH_DATA) + "/statement_corpus.txt");
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    corpus.push_back(line.substr(line.find('\t', line.find('\t') + 1) + 1));
  }
  return corpus;
}

// The parse path over every statement of the test corpus (all under 1 KB): each is timed on its
// own and the median and 90th percentile across statements are reported.
// Times `each` on every statement of the corpus, and reports the median, p90 and max per statement.
template <typename F>
void per_statement(benchmark::State& state, F&& each) {
  const std::vector<std::string> corpus = corpus_statements();
  std::vector<double> ns(corpus.size());
  for (auto _ : state) {
    for (std::size_t i = 0; i < corpus.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      each(corpus[i]);
      ns[i] =
          std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  std::sort(ns.begin(), ns.end());
  state.counters["statements"] = static_cast<double>(corpus.size());
  state.counters["median_us"] = ns[ns.size() / 2] / 1000;
  state.counters["p90_us"] = ns[ns.size() * 9 / 10] / 1000;
  state.counters["max_us"] = ns.back() / 1000;
}

void BM_ParsePathCorpus(benchmark::State& state) {
  Classifier c;
  per_statement(state, [&c](const std::string& sql) {
    benchmark::DoNotOptimize(
        c.analyze_parsed(sql, fixture().policy->dangerous_functions()).classes);
  });
}
BENCHMARK(BM_ParsePathCorpus)->Unit(benchmark::kMillisecond);

// What column rules that follow the data cost a statement the masking stage has not seen (a cache
// miss: texts differing only in numbers share an entry): statement_reads over the same corpus.
void BM_StatementReadsCorpus(benchmark::State& state) {
  per_statement(
      state, [](const std::string& sql) { benchmark::DoNotOptimize(statement_reads(sql).size()); });
}
BENCHMARK(BM_StatementReadsCorpus)->Unit(benchmark::kMillisecond);

// A COPY text row under column rules (3 of 6 fields ruled), bytes per second.
void BM_CopyTextRowMask(benchmark::State& state) {
  Masker m("bench-key");
  ResultPlan plan;
  plan.known = plan.active = true;
  for (int i = 0; i < 6; ++i) {
    MaskColumn c;
    c.kind = ValueKind::Text;
    if (i % 2 == 1) c.rule = MaskAction::Redact;
    plan.columns.push_back(c);
  }
  const std::string row =
      "12345\tcarol@example.net\tCarol Example\t219-09-9999\tsome longer note text here\t42\n";
  CopyFormat f;
  std::string out;
  for (auto _ : state) {
    bool header = false;
    benchmark::DoNotOptimize(mask_copy_row(m, plan, f, row, header, out));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * row.size()));
}
BENCHMARK(BM_CopyTextRowMask);

}  // namespace
