// What statements compute their values from (policy/output_reads.h), and the column rules that
// follow from it: computed outputs of masked columns masked, lookalikes left alone.
#include "policy/output_reads.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

namespace pgwarden::policy {
namespace {

MaskProfile profile() {
  MaskProfile p;
  p.name = "p";
  ColumnRule ssn;
  ssn.column = "ssn";
  ssn.action = MaskAction::Redact;
  ColumnRule email;
  email.column = "*email*";
  email.table = "customers";
  email.action = MaskAction::Hash;
  p.columns = {ssn, email};
  return p;
}

StatementReads one(const char* sql) {
  auto v = statement_reads(sql);
  EXPECT_EQ(v.size(), 1u) << sql;
  return v.empty() ? StatementReads{} : v[0];
}

// The rule each output column of `sql` gets when the server computed it.
std::vector<std::optional<MaskAction>> rules_of(const char* sql, std::size_t columns) {
  const MaskProfile p = profile();
  const ComputedRules r = computed_rules(p, one(sql));
  std::vector<std::optional<MaskAction>> out;
  for (std::size_t i = 0; i < columns; ++i) {
    out.push_back(i < r.by_position.size() ? r.by_position[i] : r.any);
  }
  return out;
}

constexpr std::optional<MaskAction> kNone;
constexpr std::optional<MaskAction> kRedact = MaskAction::Redact;
constexpr std::optional<MaskAction> kHash = MaskAction::Hash;
constexpr std::optional<MaskAction> kNull = MaskAction::Null;

TEST(OutputReads, ComputedFromAMaskedColumnGetsItsRule) {
  using V = std::vector<std::optional<MaskAction>>;
  EXPECT_EQ(rules_of("SELECT lower(ssn), count(*), id + 1 FROM people", 3),
            (V{kRedact, kNone, kNone}));
  EXPECT_EQ(rules_of("SELECT SSN::int FROM people", 1), (V{kRedact}));
  EXPECT_EQ(rules_of("SELECT \"SSN\" || '' FROM people", 1), (V{kRedact}));
  EXPECT_EQ(rules_of("SELECT count(DISTINCT ssn), max(p.ssn) FROM people p", 2),
            (V{kRedact, kRedact}));
  EXPECT_EQ(rules_of("SELECT string_agg(work_email, ',') FROM customers", 1), (V{kHash}));
  EXPECT_EQ(rules_of("SELECT (SELECT ssn FROM people LIMIT 1), 1", 2), (V{kRedact, kNone}));
  EXPECT_EQ(rules_of("SELECT substr(ssn, 1, 3) AS a, substr(ssn, 5) AS b FROM people", 2),
            (V{kRedact, kRedact}));
  EXPECT_EQ(rules_of("SELECT unnest(string_to_array(ssn, '-')) FROM people", 1), (V{kRedact}));
  // Through a subquery, a CTE or a function in FROM.
  // (Any column read from a source that computed a masked value is masked: pgwarden does not
  // follow which of the source's columns it is.)
  EXPECT_EQ(rules_of("SELECT x, n, 1 FROM (SELECT lower(ssn) AS x, 1 AS n FROM people) s", 3),
            (V{kRedact, kRedact, kNone}));
  EXPECT_EQ(rules_of("WITH c AS (SELECT ssn AS x FROM people) SELECT upper(x) FROM c", 1),
            (V{kRedact}));
  EXPECT_EQ(rules_of("SELECT u FROM people, unnest(string_to_array(ssn, '-')) u", 1), (V{kRedact}));
  EXPECT_EQ(rules_of("SELECT v.x || '' FROM people, LATERAL (VALUES (ssn)) v(x)", 1), (V{kRedact}));
  // Whole rows: every column of the row, so the first rule's action.
  EXPECT_EQ(rules_of("SELECT row_to_json(p) FROM people p", 1), (V{kRedact}));
  EXPECT_EQ(rules_of("SELECT p::text, 1 FROM people p", 2), (V{kRedact, kNone}));
  EXPECT_EQ(rules_of("SELECT to_jsonb(people.*) FROM people", 1), (V{kRedact}));
  EXPECT_EQ(rules_of("SELECT ROW(t.*) FROM people t", 1), (V{kRedact}));
  // Set operations and stars: every computed column, by what the whole statement produces.
  EXPECT_EQ(rules_of("SELECT 1 UNION SELECT length(ssn) FROM people", 1), (V{kRedact}));
  EXPECT_EQ(rules_of("SELECT *, lower(ssn) FROM people", 4),
            (V{kRedact, kRedact, kRedact, kRedact}));
  // RETURNING is output too.
  EXPECT_EQ(rules_of("UPDATE people SET name = 'x' WHERE id = 1 RETURNING md5(ssn), id", 2),
            (V{kRedact, kNone}));
  // What only a condition reads is not an output value (inference through WHERE is out of reach).
  EXPECT_EQ(rules_of("SELECT count(*) FROM people WHERE ssn LIKE '123%'", 1), (V{kNone}));
  EXPECT_EQ(rules_of("SELECT o.total * 2 FROM orders o JOIN customers c ON c.email = o.email", 1),
            (V{kNone}));
  // Lookalikes: names that only contain the rule's name, or other columns.
  EXPECT_EQ(rules_of("SELECT lower(ssn_verified::text), upper(name) FROM people", 2),
            (V{kNone, kNone}));
  // Out of sight: EXECUTE, FETCH, DO, CALL and unparseable text: every computed column NULL.
  for (const char* sql :
       {"EXECUTE q(1)", "FETCH 10 FROM c", "DO $$ BEGIN END $$", "CALL p()", "SELEC lower(ssn)"}) {
    EXPECT_EQ(rules_of(sql, 1), (V{kNull})) << sql;
  }
}

TEST(OutputReads, ReadsAnywhereCopiedAndExported) {
  const MaskProfile p = profile();
  EXPECT_NE(rule_reading(p, one("SELECT 1 FROM people WHERE ssn::int > 0").anywhere), nullptr);
  EXPECT_EQ(rule_reading(p, one("SELECT 1 FROM people WHERE id > 0").anywhere), nullptr);
  for (const char* sql : {
           "INSERT INTO copy_t SELECT ssn FROM people",
           "INSERT INTO copy_t (a) VALUES ((SELECT lower(ssn) FROM people LIMIT 1))",
           "UPDATE people SET name = ssn",
           "UPDATE people p SET name = q.ssn FROM people q WHERE q.id = p.id",
           "CREATE TABLE copy_t AS SELECT ssn AS a FROM people",
           "SELECT ssn AS a INTO copy_t FROM people",
           "WITH w AS (INSERT INTO copy_t SELECT ssn FROM people RETURNING 1) SELECT * FROM w",
           "MERGE INTO copy_t t USING people p ON t.id = p.id WHEN MATCHED THEN UPDATE SET a = "
           "p.ssn",
           "MERGE INTO copy_t t USING people p ON t.id = p.id WHEN NOT MATCHED THEN INSERT VALUES "
           "(p.ssn)",
       }) {
    EXPECT_NE(rule_reading(p, one(sql).copied), nullptr) << sql;
  }
  for (const char* sql :
       {"UPDATE people SET ssn = trim(ssn) WHERE id = 1",
        "UPDATE people SET name = 'x' WHERE ssn = '1'",
        "INSERT INTO people (ssn) VALUES ('123-45-6789')", "DELETE FROM people WHERE ssn = '1'"}) {
    EXPECT_EQ(rule_reading(p, one(sql).copied), nullptr) << sql;
  }
  for (const char* sql : {"SELECT set_config('my.x', ssn, false) FROM people",
                          "SELECT pg_notify('ch', p::text) FROM people p"}) {
    EXPECT_NE(rule_reading(p, one(sql).exported), nullptr) << sql;
  }
  EXPECT_EQ(rule_reading(p, one("SELECT set_config('my.x', name, false) FROM people").exported),
            nullptr);
}

// Found by an attack on the first version: each of these got a masked value out.
TEST(OutputReads, AttackedShapes) {
  using V = std::vector<std::optional<MaskAction>>;
  const MaskProfile p = profile();
  // Columns renamed by an alias list: only the catalog knows which is which.
  EXPECT_EQ(rules_of("SELECT lower(x) FROM people p(a, b, x)", 1), (V{kRedact}));
  EXPECT_EQ(
      rules_of(
          "SELECT string_agg(w, ',') FROM (people p JOIN (SELECT 1) q(o) ON true) AS j(a, b, w)",
          1),
      (V{kRedact}));
  EXPECT_NE(rule_reading(p, one("SELECT x::int FROM people p(a, b, x)").anywhere), nullptr);
  EXPECT_NE(rule_reading(p, one("CREATE TEMP TABLE c AS SELECT x FROM people p(a, b, x)").copied),
            nullptr);
  EXPECT_NE(
      rule_reading(p, one("SELECT set_config('my.x', x, false) FROM people p(a, b, x)").exported),
      nullptr);
  // (row).* expands to several columns: positions after it are not the select list's.
  EXPECT_EQ(rules_of("SELECT (ROW(1, 2)).*, upper(ssn) AS v, 1 AS z FROM people", 4),
            (V{kRedact, kRedact, kRedact, kRedact}));
  // A query in a string reads anything.
  for (const char* sql : {"SELECT query_to_xml('select ssn from people', true, false, '')",
                          "SELECT table_to_xml('people', true, false, '')",
                          "SELECT word FROM ts_stat('select to_tsvector(ssn) from people')"}) {
    EXPECT_EQ(rules_of(sql, 1), (V{kRedact})) << sql;
    EXPECT_NE(rule_reading(p, one(sql).anywhere), nullptr) << sql;
  }
  // Stores the session or another can read back: large objects, sequences, advisory lock keys.
  for (const char* sql : {"SELECT lo_from_bytea(0, convert_to(ssn, 'UTF8')) FROM people",
                          "SELECT setval('s', length(ssn)) FROM people",
                          "SELECT pg_advisory_lock(hashtext(ssn)) FROM people",
                          "SELECT pg_logical_emit_message(true, 'x', ssn) FROM people"}) {
    EXPECT_NE(rule_reading(p, one(sql).exported), nullptr) << sql;
  }
  // SET x = ... of the same name is exempt only for the row's own value.
  EXPECT_NE(rule_reading(p, one("UPDATE tmp SET ssn = (SELECT ssn FROM people LIMIT 1)").copied),
            nullptr);
  EXPECT_NE(rule_reading(p, one("UPDATE tmp SET ssn = m.ssn FROM people m").copied), nullptr);
  EXPECT_EQ(rule_reading(p, one("UPDATE people SET ssn = upper(ssn) WHERE id = 1").copied),
            nullptr);
  // Views store a query: one reading a masked column is a copy.
  EXPECT_NE(rule_reading(p, one("CREATE TEMP VIEW v AS SELECT ssn AS x FROM people").copied),
            nullptr);
  EXPECT_EQ(rule_reading(p, one("CREATE VIEW v AS SELECT id FROM people").copied), nullptr);
  // Code pgwarden does not read, the planner's statistics, and names that change meaning.
  for (const char* sql :
       {"DO $$ BEGIN END $$",
        "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql AS 'SELECT ssn FROM people'",
        "CREATE RULE r AS ON INSERT TO t DO ALSO NOTIFY c"}) {
    EXPECT_TRUE(one(sql).code) << sql;
  }
  EXPECT_TRUE(one("SELECT histogram_bounds FROM pg_stats WHERE tablename = 'people'").statistics);
  EXPECT_TRUE(one("SELECT * FROM pg_catalog.pg_statistic").statistics);
  for (const char* sql : {"PREPARE q AS SELECT 1", "DEALLOCATE q", "DECLARE c CURSOR FOR SELECT 1",
                          "CLOSE c", "DISCARD ALL"}) {
    EXPECT_TRUE(one(sql).renames) << sql;
  }
  EXPECT_FALSE(one("SELECT lower(ssn) FROM people").renames);
}

TEST(OutputReads, NonAsciiNamesMatchNonAsciiRulesWhateverTheirCase) {
  MaskProfile p;
  ColumnRule r;
  r.column = "prénom";
  p.columns = {r};
  EXPECT_NE(rule_reading(p, one("SELECT lower(\"PRÉNOM\") FROM t").produced), nullptr);
  EXPECT_EQ(rule_reading(p, one("SELECT lower(nom) FROM t").produced), nullptr);
}

TEST(OutputReads, StatementsOfAQueryStringAndBothBackslashReadings) {
  const auto v = statement_reads("SELECT 1; SELECT lower(ssn) FROM people; SELECT 2");
  ASSERT_EQ(v.size(), 3u);
  const MaskProfile p = profile();
  EXPECT_FALSE(computed_rules(p, v[0]).active());
  EXPECT_TRUE(computed_rules(p, v[1]).active());
  EXPECT_FALSE(computed_rules(p, v[2]).active());
  // With standard_conforming_strings off the literal ends early and ssn is read.
  const auto b = statement_reads("SELECT 'a\\', lower(ssn) --' FROM people");
  ASSERT_EQ(b.size(), 1u);
  EXPECT_TRUE(computed_rules(p, b[0]).active());
}

// The corpus (tests/policy/data/computed_reads_corpus.txt): per class, the masked outputs,
// withheld messages and refusals found (detection) and those given where nothing was to be
// (false positives), reported and held to >= 99 % and <= 1 %. Each case must also hold on its own.
TEST(OutputReads, CorpusDetectionAndFalsePositivesPerClass) {
  std::ifstream in(std::string(PGW_TEST_DATA) + "/computed_reads_corpus.txt");
  ASSERT_TRUE(in.good());
  const MaskProfile lax = profile();
  MaskProfile strict = profile();
  strict.refuse_conditions = true;  // class "tested"
  struct Tally {
    int positives = 0, found = 0, negatives = 0, false_positives = 0;
  };
  std::map<std::string, Tally> by_class;
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
    ASSERT_NE(t2, std::string::npos) << line;
    const std::string cls = line.substr(0, t1), expect = line.substr(t1 + 1, t2 - t1 - 1),
                      sql = line.substr(t2 + 1);
    ++cases;
    Tally& t = by_class[cls];
    const MaskProfile& p = cls == "tested" ? strict : lax;
    const StatementReads s = one(sql.c_str());
    const bool refused = refusal_of(p, s).why != ReadsRefusal::None;
    const auto score = [&t](bool want, bool got) {
      (want ? t.positives : t.negatives)++;
      if (want && got) ++t.found;
      if (!want && got) ++t.false_positives;
    };
    score(expect == "refuse", refused);
    EXPECT_EQ(refused, expect == "refuse") << sql;
    if (expect == "refuse") continue;
    std::string outputs = expect.substr(0, expect.find(' '));
    if (outputs == "none") outputs.clear();
    const bool withheld = outputs.find('M') != std::string::npos || expect.ends_with(" w");
    const ComputedRules r = computed_rules(p, s);
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      const auto& rule = i < r.by_position.size() ? r.by_position[i] : r.any;
      score(outputs[i] == 'M', rule.has_value());
      EXPECT_EQ(rule.has_value(), outputs[i] == 'M') << "output " << i + 1 << " of " << sql;
    }
    const bool got_withheld = s.opaque || rule_reading(p, s.anywhere) != nullptr;
    score(withheld, got_withheld);
    EXPECT_EQ(got_withheld, withheld) << "messages withheld: " << sql;
  }
  EXPECT_GT(cases, 150);
  for (const auto& [cls, t] : by_class) {
    const double detection = t.positives == 0 ? 1.0 : double(t.found) / t.positives;
    const double fp = t.negatives == 0 ? 0.0 : double(t.false_positives) / t.negatives;
    std::printf(
        "[ computed  ] %-14s detection %3d/%3d (%5.1f %%), false positives %3d/%3d (%4.1f %%)\n",
        cls.c_str(), t.found, t.positives, 100 * detection, t.false_positives, t.negatives,
        100 * fp);
    EXPECT_GE(detection, 0.99) << cls;
    EXPECT_LE(fp, 0.01) << cls;
    EXPECT_GT(t.positives, 0) << cls << ": a class without a case to find";
    EXPECT_GT(t.negatives, 0) << cls << ": a class without a lookalike";
  }
}

}  // namespace
}  // namespace pgwarden::policy
