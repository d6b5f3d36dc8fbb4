// Readers of libpg_query's JSON parse tree (simdjson DOM) shared by the classifier's walker:
// constants, columns, boolean structure, and which relation a condition refers to.
#pragma once

#include <pg_query.h>
#include <simdjson.h>

#include <string>
#include <string_view>
#include <vector>

extern "C" __thread bool standard_conforming_strings;  // libpg_query's lexer setting

namespace pgwarden::policy::tree {

// Sets libpg_query's lexing of backslashes for the scope, and back.
class ScsScope {
 public:
  explicit ScsScope(bool on) : saved_(standard_conforming_strings) {
    standard_conforming_strings = on;
  }
  ~ScsScope() { standard_conforming_strings = saved_; }
  ScsScope(const ScsScope&) = delete;
  ScsScope& operator=(const ScsScope&) = delete;

 private:
  bool saved_;
};

// One libpg_query parse of `sql`, freed with the object (also when a walk of it throws).
class Parsed {
 public:
  explicit Parsed(std::string_view sql) : r_(pg_query_parse(std::string(sql).c_str())) {}
  ~Parsed() { pg_query_free_parse_result(r_); }
  Parsed(const Parsed&) = delete;
  Parsed& operator=(const Parsed&) = delete;
  // The parser accepted it: its tree as JSON.
  bool ok() const noexcept { return r_.error == nullptr && r_.parse_tree != nullptr; }
  std::string_view json() const noexcept { return r_.parse_tree; }
  const PgQueryParseResult& result() const noexcept { return r_; }

 private:
  PgQueryParseResult r_;
};

namespace sj = simdjson;

bool has(sj::dom::element obj, const char* key);
// A String node's value, or empty.
std::string_view str(sj::dom::element e);
// The constant inside an A_Const, as JSON without its location, or empty.
std::string constant(sj::dom::element e);
// A ColumnRef's fields as JSON, or empty.
std::string column(sj::dom::element e);
// Whether a condition refers to the row at all (a column anywhere in it).
bool has_column(sj::dom::element e);
// A BoolExpr's operator (AND_EXPR, OR_EXPR, NOT_EXPR) and arguments.
bool bool_expr(sj::dom::element e, std::string_view& op, sj::dom::array& args);
// An A_Expr's operator when it has a one-part name.
std::string_view op_name(sj::dom::element expr);
// Recognisably false whatever the row: WHERE false, 1 = 0, 'a' <> 'a', NOT true, f AND x...
bool always_false(sj::dom::element e);

// The relation a DELETE, UPDATE or MERGE changes, as its columns are written in conditions:
// by its alias if it has one, else by its name. Columns of the other relations (USING, FROM,
// MERGE's source) are told apart by their qualifier, or by name where the statement lists them
// (a subquery's, VALUES' or a function's columns). An unqualified column counts as the target's
// only when it cannot be another relation's: no source whose columns are in the catalog only (a
// table, a CTE, a function), and not inside a subquery with a FROM of its own. pgwarden does not
// read the catalog to judge a statement: qualify the target's columns.
struct Target {
  std::string qualifier;
  std::vector<std::string> source_columns;
  bool source_unknown = false;  // a source relation whose columns the statement does not list
  bool in_subquery = false;
  mutable bool ambiguous = false;  // an unqualified column did not count (see above)
};

// The target of a DELETE, UPDATE or MERGE statement (its "relation").
Target target_of(sj::dom::element stmt);
// Adds the columns a source relation (RangeVar, RangeSubselect, RangeFunction, JoinExpr) brings.
void source_columns(sj::dom::element rel, Target& t);
// Whether a condition refers to the target's row (with no target: to any row).
bool refers_target(sj::dom::element e, const Target* t);

}  // namespace pgwarden::policy::tree
