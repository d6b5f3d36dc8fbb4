// What a statement's values are computed from, so that column rules follow the data and not
// only the RowDescription's table and column (issue 14). An output column the server computes
// (lower(ssn), count(ssn), t::text, row_to_json(t), a subquery's or a set-returning function's
// output) has no table in its RowDescription: which columns it read is told here from the parse
// tree, by name. The masking stage matches those names against the caller's column rules (by
// column name, whatever the table: a computed value may mix several) and masks the output; it
// withholds the text of errors and notices of statements that read a masked column anywhere
// (they may quote its value), and refuses statements that would copy a masked value where it
// could be read back unmasked (a table, a setting, a notification). Sans-I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/masking.h"

namespace pgwarden::policy {

// Columns read, by name (the last part, folded as PostgreSQL folds identifiers).
struct ReadSet {
  std::vector<std::string> names;
  bool whole_row = false;  // a whole row (t, t.*, ROW(t.*), to_json(t)): every column of it
  void add(std::string name);
  void merge(const ReadSet& o);
  bool empty() const noexcept { return names.empty() && !whole_row; }
};

struct StatementReads {
  bool positional = false;       // outputs[i] is what output column i is computed from
  std::vector<ReadSet> outputs;  // the top-level select list (or RETURNING)
  ReadSet nested;        // value-producing places below the top level (FROM subqueries, CTEs...)
  ReadSet produced;      // outputs and nested together
  ReadSet anywhere;      // every column the statement names (conditions too)
  ReadSet tested;        // columns named where no value is read or stored: conditions, joins,
                         // ORDER BY, GROUP BY, LIMIT, windows' PARTITION BY / ORDER BY
  ReadSet copied;        // values a write stores (INSERT, UPDATE SET, MERGE, CREATE TABLE AS, INTO)
  ReadSet exported;      // arguments of set_config and pg_notify
  bool opaque = false;   // what it returns is computed out of sight (DO, EXECUTE, FETCH, CALL)
  bool renames = false;  // PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD: names change meaning
  bool code = false;     // DO, CREATE FUNCTION / RULE / TRIGGER: code pgwarden does not read
  bool statistics = false;  // reads the planner's statistics (sample values of every column)
  // The text did not parse (nor could be read): what it reads is unknown, and it says nothing
  // of another text of its shape (1.1.1 does not parse where 1 does).
  bool unread = false;
};

// One per statement of `sql`. A text PostgreSQL's parser refuses gives one opaque statement.
// A backslash makes both readings (standard_conforming_strings on and off) count.
std::vector<StatementReads> statement_reads(std::string_view sql);

// The first column rule of `p` whose column pattern a name in `r` matches (a whole row matches
// the first rule); null if none.
const ColumnRule* rule_reading(const MaskProfile& p, const ReadSet& r);

// The column rules for the computed output columns of a result of `s` (see ComputedRules).
ComputedRules computed_rules(const MaskProfile& p, const StatementReads& s);

// Why `s` is refused while the column rules of `p` apply: it runs code pgwarden does not read, it
// reads the planner's statistics, or it stores a masked column's value where it could be read
// back unmasked (`rule` and `set` then say which value), or (under "conditions": "refuse") it
// tests a masked column in a condition.
struct ReadsRefusal {
  enum Why : std::uint8_t { None, Code, Statistics, Stores, Tests } why = None;
  const ColumnRule* rule = nullptr;
  const ReadSet* set = nullptr;
};
ReadsRefusal refusal_of(const MaskProfile& p, const StatementReads& s);

}  // namespace pgwarden::policy
