#include "policy/output_reads.h"

#include <pg_query.h>
#include <simdjson.h>

#include <algorithm>

#include "policy/classifier.h"
#include "policy/parse_tree.h"

namespace pgwarden::policy {

namespace {

namespace sj = simdjson;
using sj::dom::element;

using tree::ScsScope;

bool child(element e, const char* key, element& out) {
  return e[key].get(out) == sj::SUCCESS;
}

// The node inside a {"Type": {...}} wrapper, when it is of that type.
bool node(element e, const char* type, element& out) {
  return e.type() == sj::dom::element_type::OBJECT && child(e, type, out);
}

// Names a whole row of a table may be written with: relations, their aliases, joins' aliases,
// CTEs. Not the aliases of subqueries and functions in FROM: the whole row of one of those is what
// it computes, which its reads already hold (a name also used for a table stays a table's).
void relation_names(element e, std::vector<std::string>& out) {
  if (e.type() == sj::dom::element_type::ARRAY) {
    for (element c : sj::dom::array(e.get_array().value_unsafe())) relation_names(c, out);
    return;
  }
  if (e.type() != sj::dom::element_type::OBJECT) return;
  for (auto f : sj::dom::object(e.get_object().value_unsafe())) {
    std::string_view s;
    if ((f.key == "relname" || f.key == "aliasname" || f.key == "ctename") &&
        f.value.get_string().get(s) == sj::SUCCESS) {
      out.emplace_back(s);
    } else if ((f.key == "RangeSubselect" || f.key == "RangeFunction" ||
                f.key == "RangeTableFunc") &&
               f.value.type() == sj::dom::element_type::OBJECT) {
      for (auto g : sj::dom::object(f.value.get_object().value_unsafe())) {
        if (g.key != "alias") relation_names(g.value, out);
      }
    } else {
      relation_names(f.value, out);
    }
  }
}

bool has_key(element e, std::string_view key) {
  if (e.type() == sj::dom::element_type::ARRAY) {
    for (element c : sj::dom::array(e.get_array().value_unsafe())) {
      if (has_key(c, key)) return true;
    }
    return false;
  }
  if (e.type() != sj::dom::element_type::OBJECT) return false;
  for (auto f : sj::dom::object(e.get_object().value_unsafe())) {
    if (f.key == key || has_key(f.value, key)) return true;
  }
  return false;
}

// Relations whose columns the statement renames (FROM t AS a(x, y)): what a renamed column is,
// only the catalog knows.
bool renames_columns(element e) {
  if (e.type() == sj::dom::element_type::ARRAY) {
    for (element c : sj::dom::array(e.get_array().value_unsafe())) {
      if (renames_columns(c)) return true;
    }
    return false;
  }
  if (e.type() != sj::dom::element_type::OBJECT) return false;
  for (auto f : sj::dom::object(e.get_object().value_unsafe())) {
    element alias;
    if ((f.key == "RangeVar" || f.key == "JoinExpr") &&
        f.value["alias"].get(alias) == sj::SUCCESS && tree::has(alias, "colnames")) {
      return true;
    }
    if (renames_columns(f.value)) return true;
  }
  return false;
}

bool statistics_relation(std::string_view name) {
  return name == "pg_stats" || name == "pg_stats_ext" || name == "pg_stats_ext_exprs" ||
         name == "pg_statistic" || name == "pg_statistic_ext" || name == "pg_statistic_ext_data";
}

struct Walker {
  std::vector<std::string> relations;
  // Whether `all` reads values (what an expression is computed from) or every name (conditions
  // too). A value is not computed from what only decides which rows or in what order: a
  // subquery's conditions, a window's PARTITION BY and ORDER BY (inference through those is out
  // of reach, as through WHERE).
  bool values = true;

  // Every column named under `e` (see `values`).
  void all(element e, ReadSet& into) {
    if (e.type() == sj::dom::element_type::ARRAY) {
      for (element c : sj::dom::array(e.get_array().value_unsafe())) all(c, into);
      return;
    }
    if (e.type() != sj::dom::element_type::OBJECT) return;
    for (auto f : sj::dom::object(e.get_object().value_unsafe())) {
      if (f.key == "ColumnRef") {
        column_ref(f.value, into);
        continue;
      }
      if (f.key == "SelectStmt" || f.key == "larg" || f.key == "rarg") {
        if (!values) by_output(f.value);
        in_select(f.value, [&] { all(f.value, into); });
        continue;
      }
      if (!values && (f.key == "IndexElem" || f.key == "StatsElem")) {
        // Columns named as strings: ON CONFLICT (ssn), CREATE INDEX, CREATE STATISTICS.
        tested_by_output.add(std::string(f.value["name"].get_string().value_unsafe()));
      }
      if (!values && f.key == "Constraint") {
        sj::dom::array keys;
        for (const char* k : {"keys", "including", "fk_attrs", "pk_attrs"}) {
          if (f.value[k].get_array().get(keys) != sj::SUCCESS) continue;
          for (element key : keys) tested_by_output.add(std::string(tree::str(key)));
        }
      }
      if (!values && f.key == "onConflictClause" &&
          has(f.value["infer"].value_unsafe(), "conname")) {
        tested_by_output.whole_row = true;  // ON CONFLICT ON CONSTRAINT: its columns are unknown
      }
      if (!values && f.key == "SubLink") {
        std::string_view type;
        element sub, body;
        if (f.value["subLinkType"].get_string().get(type) == sj::SUCCESS &&
            type == "EXISTS_SUBLINK" && child(f.value, "subselect", sub) &&
            node(sub, "SelectStmt", body) && trivial_targets(body)) {
          // EXISTS (SELECT 1 / * ...) reads no value of its select list.
          by_output(body);
          for (auto g : sj::dom::object(body.get_object().value_unsafe())) {
            if (g.key != "targetList") all(g.value, into);
          }
          continue;
        }
      }
      if (!values && f.key == "JoinExpr") {
        // JOIN ... USING (ssn) compares columns it names only as strings; NATURAL JOIN, every
        // column the two sides share.
        sj::dom::array using_cols;
        if (f.value["usingClause"].get_array().get(using_cols) == sj::SUCCESS) {
          for (element u : using_cols) tested_by_output.add(std::string(tree::str(u)));
        }
        bool natural = false;
        if (f.value["isNatural"].get_bool().get(natural) == sj::SUCCESS && natural) {
          tested_by_output.whole_row = true;
        }
      }
      if (f.key == "A_Indirection") {
        // (row).field: the field's name is read too, where the row is.
        ReadSet fields;
        sj::dom::array ind;
        if (f.value["indirection"].get_array().get(ind) == sj::SUCCESS) {
          for (element x : ind) {
            element str;
            if (node(x, "String", str)) fields.add(std::string(tree::str(x)));
          }
        }
        element arg, ref;
        if (child(f.value, "arg", arg) && node(arg, "ColumnRef", ref)) {
          column_ref(ref, into, &fields);
        } else {
          if (child(f.value, "arg", arg)) all(arg, into);
          into.merge(fields);
          if (!values) named.emplace_back(-1, fields);
        }
        if (ind.size() > 0) all(f.value["indirection"].value_unsafe(), into);  // subscripts
        continue;
      }
      if (values && f.key == "SubLink") {
        element part, body;
        if (child(f.value, "testexpr", part)) all(part, into);  // x IN (...), x = ANY (...)
        std::string_view type;
        if (f.value["subLinkType"].get_string().get(type) == sj::SUCCESS &&
            type == "EXISTS_SUBLINK" && child(f.value, "subselect", part) &&
            node(part, "SelectStmt", body) && !has(body, "larg") && trivial_targets(body)) {
          list(body, "fromClause", into, false);  // EXISTS (SELECT 1 / * ...): no value read
          with(body, into);
        } else if (child(f.value, "subselect", part)) {
          produced(part, into);
        }
        continue;
      }
      // A window: FuncCall's "over" (unwrapped), or a WINDOW clause's WindowDef.
      if (values && (f.key == "over" || f.key == "WindowDef") &&
          f.value.type() == sj::dom::element_type::OBJECT) {
        for (auto g : sj::dom::object(f.value.get_object().value_unsafe())) {
          if (g.key != "partitionClause" && g.key != "orderClause") all(g.value, into);
        }
        continue;
      }
      if (f.key == "FuncCall" &&
          (function_classes(function_name(f.value)) & bit(StatementClass::QueryInString)) != 0) {
        into.whole_row = true;  // query_to_xml('select ...'), table_to_xml, ts_stat...: anything
      }
      all(f.value, into);
    }
  }

  static std::string function_name(element call) {
    sj::dom::array name;
    if (call["funcname"].get_array().get(name) != sj::SUCCESS || name.size() == 0) return {};
    return ascii_lower(tree::str(name.at(name.size() - 1).value_unsafe()));
  }

  // GROUP BY, ORDER BY and DISTINCT ON may name an output column by its position or alias
  // (ORDER BY 1, GROUP BY s for ssn AS s): what that output reads is tested.
  ReadSet tested_by_output;
  void by_output(element sel) {
    element holder = sel, left;
    std::string_view op;
    while (holder["op"].get_string().get(op) == sj::SUCCESS && op != "SETOP_NONE" &&
           child(holder, "larg", left)) {
      holder = left;  // a set operation's columns are its first branch's (no wrapper)
    }
    sj::dom::array targets;
    if (holder["targetList"].get_array().get(targets) != sj::SUCCESS) return;
    const auto target_reads = [&](std::size_t i) {
      element rt, val;
      if (i >= targets.size() || !node(targets.at(i).value_unsafe(), "ResTarget", rt) ||
          !child(rt, "val", val)) {
        return;
      }
      const bool was = values;
      values = true;
      all(val, tested_by_output);
      values = was;
    };
    // Items, with those inside ROLLUP, CUBE and GROUPING SETS.
    std::vector<element> items;
    const auto collect = [&items](auto&& self, element list) -> void {
      if (list.type() != sj::dom::element_type::ARRAY) return;
      for (element item : sj::dom::array(list.get_array().value_unsafe())) {
        element gs, content;
        if (node(item, "GroupingSet", gs) && child(gs, "content", content)) {
          self(self, content);
        } else {
          items.push_back(item);
        }
      }
    };
    for (const char* key : {"groupClause", "sortClause", "distinctClause"}) {
      element list;
      if (child(sel, key, list)) collect(collect, list);
    }
    {
      for (element item : items) {
        element n = item, sb, c, ref;
        if (node(item, "SortBy", sb)) child(sb, "node", n);
        std::int64_t k = 0;
        if (node(n, "A_Const", c) && c["ival"]["ival"].get_int64().get(k) == sj::SUCCESS && k > 0) {
          target_reads(static_cast<std::size_t>(k - 1));
        } else if (node(n, "ColumnRef", ref)) {
          sj::dom::array fields;
          if (ref["fields"].get_array().get(fields) != sj::SUCCESS || fields.size() != 1) continue;
          const std::string_view name = tree::str(fields.at(0).value_unsafe());
          for (std::size_t i = 0; i < targets.size(); ++i) {
            std::string_view alias;
            if (targets.at(i)["ResTarget"]["name"].get_string().get(alias) == sj::SUCCESS &&
                alias == name) {
              target_reads(i);
            }
          }
        }
      }
    }
  }

  // Where each column reference stands (its byte offset): read as a value (valued), or named
  // at all (named, with what it names); those only named are tested.
  std::vector<std::int64_t> valued;
  std::vector<std::pair<std::int64_t, ReadSet>> named;
  bool unknown = false;     // walking a statement whose value places are not known
  bool star_is_row = true;  // the SELECT being walked reads a table in FROM (see column_ref)

  // Runs `walk` with star_is_row set for the SELECT body `body`.
  template <typename F>
  void in_select(element body, F&& walk) {
    const bool was = star_is_row;
    element from;
    star_is_row = child(body, "fromClause", from) && has_key(from, "RangeVar");
    walk();
    star_is_row = was;
  }

  void column_ref(element ref, ReadSet& into, const ReadSet* fields = nullptr) {
    ReadSet r;
    column_ref_names(ref, r);
    if (fields != nullptr) r.merge(*fields);
    std::int64_t at = -1;
    if (ref["location"].get_int64().get(at) != sj::SUCCESS) at = -1;
    if (values) {
      if (!unknown) valued.push_back(at);
    } else {
      named.emplace_back(at, r);
    }
    into.merge(r);
  }

  void column_ref_names(element ref, ReadSet& into) {
    sj::dom::array fields;
    if (ref["fields"].get_array().get(fields) != sj::SUCCESS || fields.size() == 0) return;
    const element last = fields.at(fields.size() - 1).value_unsafe();
    if (has(last, "A_Star")) {
      // t.* (or * inside an expression); a bare * is a whole row only where its FROM has a
      // table (else it is the columns of subqueries and functions, read where they are computed).
      if (fields.size() > 1 || star_is_row) into.whole_row = true;
      return;
    }
    const std::string name(tree::str(last));
    // Relation names are compared folded (a superset: "P" and p are different relations).
    if (fields.size() == 1 &&
        std::find(relations.begin(), relations.end(), ascii_lower(name)) != relations.end()) {
      into.whole_row = true;  // a relation's name alone is its whole row
    }
    // t.f is f(t) when t has no column f (attribute notation): the functions of PostgreSQL 15
    // that take a whole row so (checked against its catalog), and hstore's.
    if (fields.size() >= 2 && row_function(ascii_lower(name)) &&
        std::find(relations.begin(), relations.end(),
                  ascii_lower(tree::str(fields.at(fields.size() - 2).value_unsafe()))) !=
            relations.end()) {  // t.f, or schema.t.f
      into.whole_row = true;
    }
    if (!name.empty()) into.add(name);
  }

  static bool row_function(std::string_view n) {
    static constexpr std::string_view kNames[] = {
        "array_agg",        "concat",     "count",
        "hash_record",      "hstore",     "json_agg",
        "json_build_array", "jsonb_agg",  "jsonb_build_array",
        "num_nonnulls",     "num_nulls",  "pg_column_compression",
        "pg_column_size",   "pg_typeof",  "quote_literal",
        "quote_nullable",   "record_out", "record_send",
        "row_to_json",      "to_json",    "to_jsonb"};
    return std::find(std::begin(kNames), std::end(kNames), n) != std::end(kNames);
  }

  static bool has(element e, const char* key) { return tree::has(e, key); }

  // What the rows a FROM item brings are computed from.
  void from_item(element e, ReadSet& into) {
    element n;
    if (node(e, "RangeVar", n)) return;
    if (node(e, "RangeSubselect", n)) {
      element q;
      if (child(n, "subquery", q)) produced(q, into);
      return;
    }
    if (node(e, "JoinExpr", n)) {  // the join condition produces nothing
      element side;
      if (child(n, "larg", side)) from_item(side, into);
      if (child(n, "rarg", side)) from_item(side, into);
      return;
    }
    // Functions, XMLTABLE, TABLESAMPLE...: everything they name. Their arguments decide how
    // many rows there are, too: not counted as values for `tested`.
    const bool was = unknown;
    unknown = true;
    all(e, into);
    unknown = was;
  }

  void list(element e, const char* key, ReadSet& into, bool targets) {
    sj::dom::array items;
    if (e[key].get_array().get(items) != sj::SUCCESS) return;
    for (element item : items) {
      element rt, val;
      if (targets && node(item, "ResTarget", rt) && child(rt, "val", val)) {
        all(val, into);
      } else if (key == std::string_view("fromClause")) {
        from_item(item, into);
      } else {
        all(item, into);
      }
    }
  }

  void with(element e, ReadSet& into) {
    sj::dom::array ctes;
    if (e["withClause"]["ctes"].get_array().get(ctes) != sj::SUCCESS) return;
    for (element c : ctes) {
      element q;
      if (c["CommonTableExpr"]["ctequery"].get(q) == sj::SUCCESS) produced(q, into);
    }
  }

  // SELECT ... INTO, also as a set operation's first branch (where the parser puts it).
  static bool select_into(element body) {
    element left = body;
    for (;;) {
      if (has(left, "intoClause")) return true;
      if (!child(left, "larg", left)) return false;
    }
  }

  // A select list that computes nothing: constants, columns and stars (EXISTS (SELECT 1 ...),
  // EXISTS (SELECT * ...)); EXISTS tells whether there are rows, and such a list quotes no value
  // in an error.
  static bool trivial_targets(element body) {
    sj::dom::array items;
    if (body["targetList"].get_array().get(items) != sj::SUCCESS) return true;
    for (element item : items) {
      element rt, val;
      if (!node(item, "ResTarget", rt) || !child(rt, "val", val)) return false;
      if (!has(val, "A_Const") && !has(val, "ColumnRef")) return false;
    }
    return true;
  }

  // A SELECT's values (its body: a set operation's branches come without the node's wrapper).
  void select_body(element s, ReadSet& into) {
    in_select(s, [&] { list(s, "targetList", into, true); });
    list(s, "valuesLists", into, false);
    list(s, "fromClause", into, false);
    with(s, into);
    element side;
    if (child(s, "larg", side)) select_body(side, into);
    if (child(s, "rarg", side)) select_body(side, into);
  }

  // Everything a statement's result values may be computed from.
  void produced(element e, ReadSet& into) {
    element s;
    // Statements that carry a query: what it computes.
    for (const char* type : {"ExplainStmt", "PrepareStmt", "DeclareCursorStmt", "CreateTableAsStmt",
                             "ViewStmt", "CopyStmt"}) {
      element q;
      if (node(e, type, s) && child(s, "query", q)) {
        produced(q, into);
        return;
      }
    }
    if (node(e, "SelectStmt", s)) {
      select_body(s, into);
      return;
    }
    for (const char* type : {"InsertStmt", "UpdateStmt", "DeleteStmt"}) {
      if (node(e, type, s)) {
        list(s, "returningList", into, true);
        list(s, "fromClause", into, false);
        list(s, "usingClause", into, false);
        with(s, into);
        return;
      }
    }
    if (node(e, "MergeStmt", s)) {  // returns no rows (PostgreSQL 15)
      element src;
      if (child(s, "sourceRelation", src)) from_item(src, into);
      with(s, into);
      return;
    }
    // Anything else: whatever it names may be in what it returns, but none of it counts as a
    // value read for `tested` (only the places above are known to be values).
    const bool was = unknown;
    unknown = true;
    all(e, into);
    unknown = was;
  }

  // The values of a SET list (`holder`'s targetList) of statement `stmt`.
  void set_values(element stmt, element holder, ReadSet& into) {
    sj::dom::array items;
    if (holder["targetList"].get_array().get(items) != sj::SUCCESS) return;
    for (element item : items) {
      element rt, val;
      if (!node(item, "ResTarget", rt) || !child(rt, "val", val)) continue;
      std::string_view target;
      if (rt["name"].get_string().get(target) != sj::SUCCESS) target = {};
      ReadSet r;
      all(val, r);
      // SET x = f(x) keeps the row's own value in its column: only without a subquery or
      // another relation that could bring a masked value of the same name.
      if (!has(stmt, "fromClause") && !has(stmt, "sourceRelation") && !has_key(val, "SubLink")) {
        std::erase(r.names, std::string(target));
      }
      into.merge(r);
    }
  }

  // Values a write stores somewhere (UPDATE SET x = f(x) keeps x's value in x: not counted).
  // As for what a statement returns, what only chooses rows (conditions) is no value stored.
  void copied(element e, ReadSet& into) {
    element s;
    // Statements that carry another: EXPLAIN ANALYZE runs it, PREPARE keeps it for EXECUTE,
    // CREATE SCHEMA creates what it lists.
    if (node(e, "ExplainStmt", s) || node(e, "PrepareStmt", s)) {
      element q;
      if (child(s, "query", q)) copied(q, into);
      return;
    }
    if (node(e, "CreateSchemaStmt", s)) {
      sj::dom::array elts;
      if (s["schemaElts"].get_array().get(elts) == sj::SUCCESS) {
        for (element x : elts) copied(x, into);
      }
      return;
    }
    if (node(e, "ViewStmt", s)) {
      element q;
      if (child(s, "query", q)) produced(q, into);
      return;
    }
    if (node(e, "CopyStmt", s)) {
      // COPY TO a server file or program stores what it reads where files are read back.
      bool from = false;
      if (s["is_from"].get_bool().get(from) != sj::SUCCESS) from = false;
      if (!from && (has(s, "filename") || has(s, "is_program"))) {
        element q;
        if (child(s, "query", q)) {
          produced(q, into);
        } else {
          into.whole_row = true;
        }
      }
      return;
    }
    if (node(e, "AlterTableStmt", s)) {
      // USING of a type change, generated columns, defaults: values a column gets from others
      // (a column definition's; a CHECK constraint stores nothing).
      sj::dom::array cmds;
      if (s["cmds"].get_array().get(cmds) != sj::SUCCESS) return;
      for (element c : cmds) {
        element def;
        if (c["AlterTableCmd"]["def"].get(def) == sj::SUCCESS && has(def, "ColumnDef")) {
          all(def, into);
        }
      }
      return;
    }
    if (node(e, "RenameStmt", s)) {
      // Rules name columns (and tables): a renamed one would no longer be masked.
      std::string_view type, sub;
      if (s["renameType"].get_string().get(type) != sj::SUCCESS) type = {};
      if (type == "OBJECT_COLUMN" && s["subname"].get_string().get(sub) == sj::SUCCESS) {
        into.add(std::string(sub));
      } else if (type == "OBJECT_TABLE" || type == "OBJECT_VIEW" || type == "OBJECT_MATVIEW" ||
                 type == "OBJECT_FOREIGN_TABLE" || type == "OBJECT_SCHEMA") {
        into.whole_row = true;
      }
      return;
    }
    if (node(e, "InsertStmt", s)) {
      element q;
      if (child(s, "selectStmt", q)) produced(q, into);
      element conflict;
      if (child(s, "onConflictClause", conflict)) set_values(s, conflict, into);  // DO UPDATE SET
    } else if (node(e, "UpdateStmt", s) || node(e, "MergeStmt", s)) {
      set_values(s, s, into);
      list(s, "fromClause", into, false);
      element src;
      if (child(s, "sourceRelation", src)) from_item(src, into);
      sj::dom::array whens;
      if (s["mergeWhenClauses"].get_array().get(whens) == sj::SUCCESS) {
        for (element w : whens) {
          element mw;
          if (!node(w, "MergeWhenClause", mw)) continue;
          set_values(s, mw, into);
          list(mw, "values", into, false);
        }
      }
    } else if (node(e, "CreateTableAsStmt", s)) {
      element q, x;
      if (child(s, "query", q)) produced(q, into);
      if (child(s, "query", q) && node(q, "ExecuteStmt", x)) into.whole_row = true;  // unseen
    } else if (node(e, "SelectStmt", s) && select_into(s)) {
      produced(e, into);
    }
    // Writes inside WITH, at any level.
    for (const char* type : {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"}) {
      element w;
      sj::dom::array ctes;
      if (!node(e, type, w) || w["withClause"]["ctes"].get_array().get(ctes) != sj::SUCCESS) {
        continue;
      }
      for (element c : ctes) {
        element q;
        if (c["CommonTableExpr"]["ctequery"].get(q) == sj::SUCCESS) copied(q, into);
      }
    }
  }

  // Arguments of functions that put a value where the session (or another) reads it back.
  void exported(element e, ReadSet& into) {
    if (e.type() == sj::dom::element_type::ARRAY) {
      for (element c : sj::dom::array(e.get_array().value_unsafe())) exported(c, into);
      return;
    }
    if (e.type() != sj::dom::element_type::OBJECT) return;
    for (auto f : sj::dom::object(e.get_object().value_unsafe())) {
      if (f.key == "FuncCall") {
        const std::string fn = function_name(f.value);
        element args;
        // Settings, notifications, advisory lock keys (pg_locks shows them), and whatever a
        // function that changes something stores (sequences, large objects, WAL messages).
        // setseed: random() gives the seed back.
        if ((fn == "set_config" || fn == "pg_notify" || fn == "setseed" ||
             fn.rfind("pg_advisory", 0) == 0 || fn.rfind("pg_try_advisory", 0) == 0 ||
             (function_classes(fn) & bit(StatementClass::WriteFunction)) != 0) &&
            child(f.value, "args", args)) {
          all(args, into);
        }
      }
      exported(f.value, into);
    }
  }

  // The top level's output columns, one by one, when they map to the result's columns.
  void outputs(element targets_holder, const char* key, StatementReads& out) {
    sj::dom::array items;
    if (targets_holder[key].get_array().get(items) != sj::SUCCESS) return;
    out.positional = true;
    for (element item : items) {
      element rt, val, ref;
      if (!node(item, "ResTarget", rt) || !child(rt, "val", val)) {
        out.positional = false;
        continue;
      }
      ReadSet r;
      sj::dom::array ind;
      if (node(val, "A_Indirection", ref) &&
          ref["indirection"].get_array().get(ind) == sj::SUCCESS && ind.size() > 0 &&
          has(ind.at(ind.size() - 1).value_unsafe(), "A_Star")) {
        out.positional = false;  // (row).* expands to as many columns as the row has
      }
      if (node(val, "ColumnRef", ref)) {
        sj::dom::array fields;
        if (ref["fields"].get_array().get(fields) == sj::SUCCESS && fields.size() > 0 &&
            has(fields.at(fields.size() - 1).value_unsafe(), "A_Star")) {
          out.positional = false;  // * expands to columns of its own (with their tables)
        }
      }
      all(val, r);
      out.outputs.push_back(std::move(r));
    }
    if (!out.positional) out.outputs.clear();
  }

  StatementReads statement(element stmt) {
    StatementReads out;
    relations.clear();
    relation_names(stmt, relations);
    for (std::string& r : relations) r = ascii_lower(r);
    valued.clear();
    named.clear();
    tested_by_output = ReadSet{};
    values = false;
    all(stmt, out.anywhere);
    values = true;
    copied(stmt, out.copied);
    exported(stmt, out.exported);
    element s;
    for (const char* type :
         {"DoStmt", "ExecuteStmt", "FetchStmt", "CallStmt", "DeclareCursorStmt", "PrepareStmt"}) {
      if (node(stmt, type, s)) out.opaque = true;  // its values come later, or from elsewhere
    }
    for (const char* type :
         {"PrepareStmt", "DeallocateStmt", "DeclareCursorStmt", "ClosePortalStmt", "DiscardStmt"}) {
      if (node(stmt, type, s)) out.renames = true;
    }
    for (const char* type : {"DoStmt", "CreateFunctionStmt", "RuleStmt", "CreateTrigStmt"}) {
      if (node(stmt, type, s)) out.code = true;
    }
    for (const std::string& r : relations) {
      if (statistics_relation(r)) out.statistics = true;
    }
    if (node(stmt, "SelectStmt", s)) {
      std::string_view op;
      const bool plain = (s["op"].get_string().get(op) != sj::SUCCESS || op == "SETOP_NONE") &&
                         !has(s, "valuesLists");
      if (plain) outputs(s, "targetList", out);
      list(s, "fromClause", out.nested, false);
      with(s, out.nested);
      if (!plain) produced(stmt, out.nested);
    } else if (node(stmt, "InsertStmt", s) || node(stmt, "UpdateStmt", s) ||
               node(stmt, "DeleteStmt", s) || node(stmt, "MergeStmt", s)) {
      outputs(s, "returningList", out);
      list(s, "fromClause", out.nested, false);
      list(s, "usingClause", out.nested, false);
      element src;
      if (child(s, "sourceRelation", src)) from_item(src, out.nested);
      with(s, out.nested);
    } else if (!out.opaque) {
      produced(stmt, out.nested);  // EXPLAIN, COPY (query), SHOW...: whatever it names
    }
    if (!out.opaque) produced(stmt, out.produced);
    // What is named but read as no value is tested (a reference without a location, if any,
    // counts as tested).
    out.tested.merge(tested_by_output);
    std::sort(valued.begin(), valued.end());
    for (const auto& [at, r] : named) {
      if (at < 0 || !std::binary_search(valued.begin(), valued.end(), at)) out.tested.merge(r);
    }
    if (renames_columns(stmt)) {
      for (ReadSet* r :
           {&out.nested, &out.produced, &out.anywhere, &out.copied, &out.exported, &out.tested}) {
        if (!r->empty()) r->whole_row = true;
      }
      for (ReadSet& r : out.outputs) {
        if (!r.empty()) r.whole_row = true;
      }
    }
    return out;
  }
};

bool read_once(std::string_view sql, std::vector<StatementReads>& out) {
  const tree::Parsed parsed(sql);
  if (!parsed.ok()) return false;
  thread_local sj::dom::parser parser;  // one per core, its buffers reused
  element tree;
  if (parser.parse(parsed.json()).get(tree) != sj::SUCCESS) return false;
  sj::dom::array stmts;
  if (tree["stmts"].get_array().get(stmts) != sj::SUCCESS) return false;
  Walker w;
  for (element s : stmts) {
    element stmt;
    if (s["stmt"].get(stmt) == sj::SUCCESS) out.push_back(w.statement(stmt));
  }
  return true;
}

void merge_into(StatementReads& a, const StatementReads& b) {
  if (!a.positional || !b.positional || a.outputs.size() != b.outputs.size()) {
    a.positional = false;
    a.outputs.clear();
  } else {
    for (std::size_t i = 0; i < a.outputs.size(); ++i) a.outputs[i].merge(b.outputs[i]);
  }
  a.nested.merge(b.nested);
  a.produced.merge(b.produced);
  a.anywhere.merge(b.anywhere);
  a.tested.merge(b.tested);
  a.copied.merge(b.copied);
  a.exported.merge(b.exported);
  a.opaque = a.opaque || b.opaque;
  a.renames = a.renames || b.renames;
  a.code = a.code || b.code;
  a.statistics = a.statistics || b.statistics;
}

}  // namespace

std::vector<StatementReads> statement_reads(std::string_view sql) {
  std::vector<StatementReads> out;
  bool ok = false;
  try {
    {
      ScsScope scope(true);
      ok = read_once(sql, out);
    }
    if (sql.find('\\') != std::string_view::npos) {
      std::vector<StatementReads> off;
      ScsScope scope(false);
      if (read_once(sql, off)) {
        if (!ok || off.size() != out.size()) {
          // The readings disagree on the statements: every one is every one's.
          StatementReads all;
          all.opaque = true;
          for (const StatementReads& s : out) merge_into(all, s);
          for (const StatementReads& s : off) merge_into(all, s);
          out.assign(std::max(out.size(), off.size()), all);
          ok = true;
        } else {
          for (std::size_t i = 0; i < out.size(); ++i) merge_into(out[i], off[i]);
        }
      }
    }
  } catch (const std::exception&) {
    ok = false;
  }
  if (!ok) {
    out.assign(1, StatementReads{});
    out[0].opaque = true;  // unread: what it reads is unknown
    out[0].unread = true;
  }
  return out;
}

}  // namespace pgwarden::policy
