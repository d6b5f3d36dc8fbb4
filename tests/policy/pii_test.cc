// PII detectors against a corpus of values (tests/policy/data/pii_corpus.txt): what must be found
// and lookalikes that must pass. Reports recall and the false-positive rate; validators are
// checked on their own, and hostile input must not break the scanner.
#include "policy/pii.h"
#include "policy/rules.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>

namespace pgwarden::policy {
namespace {

TEST(PiiValidators, LuhnAndIban) {
  EXPECT_TRUE(luhn_valid("4111111111111111"));
  EXPECT_FALSE(luhn_valid("4111111111111112"));
  EXPECT_FALSE(luhn_valid(""));
  EXPECT_FALSE(luhn_valid("41111x1111111111"));
  EXPECT_TRUE(iban_valid("DE89370400440532013000"));
  EXPECT_TRUE(iban_valid("GB82 WEST 1234 5698 7654 32"));
  EXPECT_FALSE(iban_valid("DE89370400440532013001"));
  EXPECT_FALSE(iban_valid("DE8937"));
  EXPECT_FALSE(iban_valid("de89370400440532013000"));
}

// A value with more candidates than the scanner keeps is not scanned (masked whole by the
// caller); values after it scan as before.
TEST(PiiScanner, AValueOfTooManyCandidatesIsNotScanned) {
  auto detectors = PiiDetectors::build();
  ASSERT_TRUE(detectors.ok()) << detectors.error().message;
  PiiScanner scanner;
  std::vector<PiiFinding> found;
  const std::string digits(4 * PiiScanner::kMaxCandidates, '1');  // candidates at most ends
  EXPECT_FALSE(scanner.scan(digits, **detectors, found));
  ASSERT_TRUE(scanner.scan("card 4111 1111 1111 1111, mail bob@example.com", **detectors, found));
  EXPECT_EQ(found.size(), 2u);
  // Many findings under the bound still scan.
  std::string mails;
  for (int i = 0; i < 20000; ++i) mails += "bob@example.com ";
  ASSERT_TRUE(scanner.scan(mails, **detectors, found));
  EXPECT_EQ(found.size(), 20000u);
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// This process's resident memory (kB of /proc/self/status): VmRSS now, VmHWM its peak since
// reset_peak().
std::size_t status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoul(line.substr(field.size() + 1));
  }
  return 0;
}
bool reset_peak() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}

// What a scan keeps and what it takes at its peak stay bounded for the largest value a statement
// or row may carry (16 MiB, the default --max-statement-size), whatever the value holds: long
// runs of digits (a candidate at nearly every byte), a million e-mail addresses, look-alike digits.
TEST(PiiScanner, MemoryIsBoundedForTheLargestValues) {
  if (!reset_peak()) GTEST_SKIP() << "cannot reset the peak RSS (/proc/self/clear_refs)";
  auto detectors = PiiDetectors::build();
  ASSERT_TRUE(detectors.ok()) << detectors.error().message;
  PiiScanner scanner;
  std::vector<PiiFinding> found;
  const std::size_t size = std::size_t{16} << 20;
  std::string mails, fullwidth;
  while (mails.size() < size) mails += "bob@example.com ";
  while (fullwidth.size() < size) fullwidth += "\xEF\xBC\x91";  // FULLWIDTH DIGIT ONE
  const std::string digits(size, '7');
  for (const std::string* v :
       std::initializer_list<const std::string*>{&digits, &mails, &fullwidth}) {
    const std::size_t before = status_kib("VmRSS");
    ASSERT_TRUE(reset_peak());
    const bool scanned = scanner.scan(*v, **detectors, found);
    const std::size_t peak = status_kib("VmHWM"), after = status_kib("VmRSS");
    std::printf(
        "value of %zu MiB (%s): scanned %d, peak +%zu MiB, kept +%zu MiB\n", v->size() >> 20,
        v == &digits  ? "digits"
        : v == &mails ? "e-mails"
                      : "full-width digits",
        scanned, (peak - std::min(peak, before)) >> 10, (after - std::min(after, before)) >> 10);
    EXPECT_FALSE(scanned) << "more candidates than kMaxCandidates: masked whole";
    if (kSanitized) continue;
    EXPECT_LT(peak - std::min(peak, before), 256u << 10) << "peak KiB over the start";
    EXPECT_LT(after - std::min(after, before), 64u << 10) << "KiB kept after the scan";
  }
  if (kSanitized) GTEST_SKIP() << "memory bounds not checked under ASan (it keeps freed memory)";
}

// The policy engine's shape of a statement may prove it free of every built-in detector (the
// recording then does not scan it): only where the gate in front of the scan finds nothing either.
// Random statements of tokens that make or break each detector's shape.
TEST(PiiGate, AStatementsShapeProvesItFreeOnlyWhereTheGateFindsNothing) {
  auto policy = Policy::parse(R"({"rules": [{"name": "r", "deny": ["drop"]}]})", "p");
  ASSERT_TRUE(policy.ok()) << policy.error().message;
  const Rule* rule = (*policy)->match("x", {});
  ASSERT_NE(rule, nullptr);
  PolicyEngine engine;
  const char* tokens[] = {"SELECT ", "a",        " ",
                          "AB",      "DE",       "x1",
                          "12",      "3",        "4567",
                          "(",       ")",        "-",
                          ".",       "/",        "+",
                          "@",       "%",        "&",
                          ",",       "=",        "1e5",
                          "E",       "d",        "9",
                          "0",       "Q",        "ZZ",
                          "_",       "*",        ";",
                          "99",      "e+3",      "\t",
                          "'",       "--",       "$1",
                          "\\",      "\xC3\xA9", "\xEF\xBC\x91",
                          "%40",     "&#64;",    "1E",
                          "e-5",     ".5",       "Ab",
                          "$$"};
  std::mt19937 rng(17);
  int free = 0, gated = 0;
  for (int n = 0; n < 50000; ++n) {
    std::string sql = "SELECT ";
    const int count = 1 + static_cast<int>(rng() % 14);
    for (int k = 0; k < count; ++k) sql += tokens[rng() % std::size(tokens)];
    engine.judge(**policy, rule, sql);
    const bool gate = may_hold_builtin_pii(sql);
    EXPECT_EQ(gate, detail::may_hold_builtin_pii_scalar(sql)) << sql;
    gated += gate;
    if (!engine.last_free_of_builtin_pii(engine.serial())) continue;
    ++free;
    EXPECT_FALSE(gate) << "proved free, yet the gate would scan: " << sql;
  }
  // Both answers come up often: the property was tested, not passed by default.
  EXPECT_GT(free, 3000);
  EXPECT_GT(gated, 3000);
  // Nothing is known of a text but the one judged last, nor of one without a shape.
  engine.judge(**policy, rule, "SELECT a FROM t WHERE id = 12345");
  const std::uint64_t judged = engine.serial();
  EXPECT_TRUE(engine.last_free_of_builtin_pii(judged));
  engine.judge(**policy, rule, "SELECT a FROM t WHERE id = 12346");
  EXPECT_FALSE(engine.last_free_of_builtin_pii(judged));
  for (const char* unsure : {"SELECT a FROM t WHERE id = 123456789", "SELECT 1234 - 56789",
                             "SELECT 'x'", "SELECT 1 -- bob@example.com", "SELECT +1",
                             "SELECT a FROM DE89", "SELECT 5 % 3", "SELECT a@b"}) {
    engine.judge(**policy, rule, unsure);
    EXPECT_FALSE(engine.last_free_of_builtin_pii(engine.serial())) << unsure;
  }
  // Cached by shape: a second text of the shape is known free without a new look at the shape,
  // and a text of another shape is not taken for it.
  engine.judge(**policy, rule, "SELECT a FROM t WHERE id = 7");
  EXPECT_TRUE(engine.last_free_of_builtin_pii(engine.serial()));
  engine.judge(**policy, rule, "SELECT a FROM t WHERE id = 77777777 AND DE = 1");
  EXPECT_FALSE(engine.last_free_of_builtin_pii(engine.serial()));
}

TEST(PiiCorpus, RecallAndFalsePositives) {
  std::ifstream in(std::string(PGW_TEST_DATA) + "/pii_corpus.txt");
  auto detectors = PiiDetectors::build();
  ASSERT_TRUE(detectors.ok()) << detectors.error().message;
  PiiScanner scanner;
  std::vector<PiiFinding> found;
  // Per "# --- " section of the corpus (one per detector class and its lookalikes).
  struct Tally {
    std::string section;
    int must = 0, caught = 0, clean = 0, false_pos = 0;
  };
  std::vector<Tally> sections(1, Tally{"(no section)"});
  int values = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# --- ", 0) == 0) sections.push_back(Tally{line.substr(6)});
    if (line.empty() || line[0] == '#') continue;
    const auto t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
    ASSERT_NE(t2, std::string::npos) << line;
    const std::string expect = line.substr(0, t1), kind = line.substr(t1 + 1, t2 - t1 - 1);
    const std::string value = line.substr(t2 + 1);
    ++values;
    Tally& t = sections.back();
    ASSERT_TRUE(scanner.scan(value, **detectors, found)) << value;
    if (expect == "mask") {
      ++t.must;
      bool hit = false;
      for (const PiiFinding& f : found) hit = hit || pii_kind_name(f.kind) == kind;
      if (hit) {
        ++t.caught;
      } else {
        ADD_FAILURE() << "missed " << kind << " in: " << value;
      }
    } else {
      ++t.clean;
      if (!found.empty()) {
        ++t.false_pos;
        ADD_FAILURE() << "false positive " << pii_kind_name(found[0].kind) << " ["
                      << value.substr(found[0].begin, found[0].end - found[0].begin)
                      << "] in: " << value;
      }
    }
  }
  EXPECT_GE(values, 100);
  Tally all;
  auto pct = [](int a, int b) { return b == 0 ? 0.0 : 100.0 * a / b; };
  for (const Tally& t : sections) {
    all.must += t.must;
    all.caught += t.caught;
    all.clean += t.clean;
    all.false_pos += t.false_pos;
    if (t.must + t.clean == 0) continue;
    std::printf("  %-62s recall %3d/%-3d false positives %d/%d\n", t.section.c_str(), t.caught,
                t.must, t.false_pos, t.clean);
    EXPECT_GE(pct(t.caught, t.must), t.must == 0 ? 0.0 : 99.0) << t.section;
    EXPECT_LE(pct(t.false_pos, t.clean), 1.0) << t.section;
  }
  std::printf("pii corpus: %d values; recall %d/%d (%.1f%%), false positives %d/%d (%.1f%%)\n",
              values, all.caught, all.must, pct(all.caught, all.must), all.false_pos, all.clean,
              pct(all.false_pos, all.clean));
}

TEST(PiiScanner, FindsEveryValueInOrderAndSurvivesHostileInput) {
  auto detectors = PiiDetectors::build({R"(EMP-\d{6})"});
  ASSERT_TRUE(detectors.ok()) << detectors.error().message;
  PiiScanner scanner;
  std::vector<PiiFinding> found;
  const std::string v = "bob@example.com paid 4111 1111 1111 1111, ssn 123-45-6789, id EMP-004211";
  ASSERT_TRUE(scanner.scan(v, **detectors, found));
  ASSERT_EQ(found.size(), 4u);
  EXPECT_EQ(v.substr(found[0].begin, found[0].end - found[0].begin), "bob@example.com");
  EXPECT_EQ(v.substr(found[1].begin, found[1].end - found[1].begin), "4111 1111 1111 1111");
  EXPECT_EQ(v.substr(found[2].begin, found[2].end - found[2].begin), "123-45-6789");
  EXPECT_EQ(found[3].kind, PiiKind::Custom);
  EXPECT_FALSE(PiiDetectors::build({"(unclosed"}).ok());
  // Long runs of digits, separators and binary bytes: no crash, no hang, bounded findings.
  for (const std::string& hostile :
       {std::string(100000, '4'), std::string(50000, '-') + "1", std::string("\0\xff\x01@@@.", 7),
        std::string(20000, '@'), std::string(30000, ' ')}) {
    EXPECT_TRUE(scanner.scan(hostile, **detectors, found));
  }
}

// The vectorised gate computes exactly what its scalar definition does, on values built from the
// bytes the gate tells apart, at every length around its 16- and 64-byte blocks, with every
// pattern placed across a block boundary.
TEST(PiiGate, VectorisedEqualsScalar) {
  const std::string alphabet =
      std::string("0123456789 .()-/@+AZaz_,:x%&\\") + "\xc2\xa0\xef\xbc\x91";
  std::mt19937 rng(20261202);
  int tried = 0, positive = 0;
  for (int round = 0; round < 200000; ++round) {
    const std::size_t len = rng() % 200;
    std::string v;
    // Mostly digits and separators (long runs) or mostly letters, so both answers occur.
    const bool digity = rng() % 2 == 0;
    for (std::size_t i = 0; i < len; ++i) {
      v.push_back(digity && rng() % 4 != 0 ? "0123456789 -"[rng() % 12]
                                           : alphabet[rng() % alphabet.size()]);
    }
    const bool want = detail::may_hold_builtin_pii_scalar(v);
    ASSERT_EQ(may_hold_builtin_pii(v), want) << "value of " << v.size() << " bytes: " << v;
    ++tried;
    positive += want;
  }
  // Each shape with its first byte at every offset around the block boundaries.
  for (const std::string shape : {"123 456 789", "+1", "xGB82", "a@b", "12345678-9", "\xc2\xa0"}) {
    for (std::size_t at = 0; at < 140; ++at) {
      for (const char fill : {'x', '1', ' ', 'A'}) {
        std::string v(at, fill);
        v += shape;
        v += std::string(at % 7, fill == '1' ? 'y' : fill);
        ASSERT_EQ(may_hold_builtin_pii(v), detail::may_hold_builtin_pii_scalar(v)) << v;
        ++tried;
      }
    }
  }
  // Both answers were exercised, not one of them only.
  EXPECT_GT(positive, 1000);
  EXPECT_LT(positive, tried - 1000);
  std::printf("[ gate      ] %d values, %d may hold PII: vectorised == scalar on all\n", tried,
              positive);
}

}  // namespace
}  // namespace pgwarden::policy
