// What the reads of a statement (policy/output_reads.h) mean under a masking profile: which rule
// a computed output gets, and why a statement is refused.
#include <algorithm>

#include "policy/output_reads.h"

namespace pgwarden::policy {

void ReadSet::add(std::string name) {
  if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(std::move(name));
}

void ReadSet::merge(const ReadSet& o) {
  for (const std::string& n : o.names) add(n);
  whole_row = whole_row || o.whole_row;
}

const ColumnRule* rule_reading(const MaskProfile& p, const ReadSet& r) {
  if (p.columns.empty()) return nullptr;
  if (r.whole_row) return &p.columns.front();
  auto non_ascii = [](std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return (c & 0x80) != 0; });
  };
  for (const ColumnRule& rule : p.columns) {
    for (const std::string& n : r.names) {
      if (glob_match(rule.column, n)) return &rule;
      // PostgreSQL folds non-ASCII letters too (the catalog query uses lower()); pgwarden folds
      // only ASCII here, so a non-ASCII name may be the rule's in another case.
      if (non_ascii(rule.column) && non_ascii(n)) return &rule;
    }
  }
  return nullptr;
}

bool ComputedRules::active() const noexcept {
  if (any) return true;
  for (const auto& a : by_position) {
    if (a) return true;
  }
  return false;
}

ComputedRules computed_rules(const MaskProfile& p, const StatementReads& s) {
  ComputedRules out;
  if (p.columns.empty()) return out;
  // A computed value of unknown origin is NULL; one read from a masked column gets its rule.
  if (s.opaque) {
    out.any = MaskAction::Null;
    return out;
  }
  const ColumnRule* nested = rule_reading(p, s.nested);
  if (s.positional) {
    for (const ReadSet& r : s.outputs) {
      const ColumnRule* rule = rule_reading(p, r);
      // A column of a subquery or CTE that computed it from a masked column.
      if (rule == nullptr && nested != nullptr && !r.empty()) rule = nested;
      out.by_position.push_back(rule != nullptr ? std::optional(rule->action) : std::nullopt);
    }
  }
  if (const ColumnRule* rule = rule_reading(p, s.produced); rule != nullptr) {
    out.any = rule->action;
  }
  return out;
}

ReadsRefusal refusal_of(const MaskProfile& p, const StatementReads& s) {
  if (p.columns.empty()) return {};
  if (s.code) return {ReadsRefusal::Code};
  if (s.statistics) return {ReadsRefusal::Statistics};
  const ColumnRule* nested = rule_reading(p, s.nested);
  // A function that stores a value of a column (set_config(..., x, ...)) in a statement that
  // names a masked column anywhere: x may be that column under another name, in a subquery's
  // own FROM (which the reads do not follow). `anywhere` holds `exported` and `nested`.
  if (!s.exported.empty()) {
    if (const ColumnRule* rule = rule_reading(p, s.anywhere); rule != nullptr) {
      return {ReadsRefusal::Stores, rule, &s.anywhere};
    }
  }
  if (const ColumnRule* rule = rule_reading(p, s.copied); rule != nullptr) {
    return {ReadsRefusal::Stores, rule, &s.copied};
  }
  // A column of a subquery, CTE or function in FROM that computed it from a masked column (as
  // for computed outputs: which of the source's columns is not followed).
  if (!s.copied.empty() && nested != nullptr) return {ReadsRefusal::Stores, nested, &s.nested};
  if (p.refuse_conditions) {
    if (const ColumnRule* rule = rule_reading(p, s.tested); rule != nullptr) {
      return {ReadsRefusal::Tests, rule, &s.tested};
    }
    // A condition on a column of a subquery, CTE or function in FROM that computed from a
    // masked column (renamed there): which column is not followed.
    if (!s.tested.empty() && nested != nullptr) return {ReadsRefusal::Tests, nested, &s.nested};
  }
  return {};
}

}  // namespace pgwarden::policy
