#include "policy/parse_tree.h"

#include <algorithm>

namespace pgwarden::policy::tree {

static void select_columns(sj::dom::element select, Target& t);

bool has(sj::dom::element obj, const char* key) {
  return obj[key].error() == sj::SUCCESS;
}

std::string_view str(sj::dom::element e) {
  std::string_view s;
  if (e["String"]["sval"].get_string().get(s) == sj::SUCCESS) return s;
  return {};
}

std::string constant(sj::dom::element e) {
  sj::dom::object c;
  if (e["A_Const"].get_object().get(c) != sj::SUCCESS) return {};
  std::string s;
  for (auto f : c) {
    if (f.key == "location") continue;
    s += std::string(f.key) + ":" + sj::minify(f.value) + ";";
  }
  return s;
}

std::string column(sj::dom::element e) {
  sj::dom::element fields;
  if (e["ColumnRef"]["fields"].get(fields) != sj::SUCCESS) return {};
  return sj::minify(fields);
}

bool has_column(sj::dom::element e) {
  const sj::dom::element_type t = e.type();
  if (t == sj::dom::element_type::ARRAY) {
    for (sj::dom::element c : sj::dom::array(e.get_array().value_unsafe())) {
      if (has_column(c)) return true;
    }
    return false;
  }
  if (t != sj::dom::element_type::OBJECT) return false;
  for (auto f : sj::dom::object(e.get_object().value_unsafe())) {
    if (f.key == "ColumnRef" || has_column(f.value)) return true;
  }
  return false;
}

bool bool_expr(sj::dom::element e, std::string_view& op, sj::dom::array& args) {
  sj::dom::element b;
  return e["BoolExpr"].get(b) == sj::SUCCESS && b["boolop"].get_string().get(op) == sj::SUCCESS &&
         b["args"].get_array().get(args) == sj::SUCCESS;
}

std::string_view op_name(sj::dom::element expr) {
  sj::dom::array name;
  if (expr["name"].get_array().get(name) != sj::SUCCESS || name.size() != 1) return {};
  return str(name.at(0).value_unsafe());
}

bool always_false(sj::dom::element e) {
  static const std::string kFalse = "boolval:{};";
  const std::string c = constant(e);
  if (!c.empty()) return c == kFalse;
  sj::dom::element arg;
  if (e["TypeCast"]["arg"].get(arg) == sj::SUCCESS) {
    const std::string v = constant(arg);
    return v == kFalse || v == "sval:{\"sval\":\"f\"};" || v == "sval:{\"sval\":\"false\"};" ||
           v == "sval:{\"sval\":\"off\"};" || v == "sval:{\"sval\":\"no\"};" || v == "ival:{};";
  }
  sj::dom::element expr;
  if (e["A_Expr"].get(expr) == sj::SUCCESS) {
    const std::string_view op = op_name(expr);
    sj::dom::element l, r;
    if (expr["lexpr"].get(l) != sj::SUCCESS || expr["rexpr"].get(r) != sj::SUCCESS) return false;
    const std::string lc = constant(l), rc = constant(r);
    if (lc.empty() || rc.empty()) return false;
    return (op == "=" && lc != rc) || ((op == "<>" || op == "!=") && lc == rc);
  }
  std::string_view bop;
  sj::dom::array args;
  if (!bool_expr(e, bop, args)) return false;
  if (bop == "NOT_EXPR" && args.size() == 1) {
    return constant(args.at(0).value_unsafe()) == "boolval:{\"boolval\":true};";
  }
  bool any = false, all = true;
  for (sj::dom::element a : args) {
    const bool f = always_false(a);
    any = any || f;
    all = all && f;
  }
  return bop == "AND_EXPR" ? any : all;
}

Target target_of(sj::dom::element stmt) {
  Target t;
  std::string_view q;
  if (stmt["relation"]["alias"]["aliasname"].get_string().get(q) == sj::SUCCESS ||
      stmt["relation"]["relname"].get_string().get(q) == sj::SUCCESS) {
    t.qualifier = q;
  }
  return t;
}

void source_columns(sj::dom::element rel, Target& t) {
  sj::dom::object o;
  if (rel.get_object().get(o) != sj::SUCCESS) return;
  for (auto f : o) {
    const std::string_view kind = f.key;
    const sj::dom::element r = f.value;
    if (kind == "JoinExpr") {
      sj::dom::element side;
      if (r["larg"].get(side) == sj::SUCCESS) source_columns(side, t);
      if (r["rarg"].get(side) == sj::SUCCESS) source_columns(side, t);
      continue;
    }
    // An alias list names the first columns; the rest keep their names.
    sj::dom::array cols;
    if (r["alias"]["colnames"].get_array().get(cols) == sj::SUCCESS) {
      for (sj::dom::element c : cols) t.source_columns.emplace_back(str(c));
    }
    if (kind == "RangeSubselect") {
      sj::dom::element select;
      if (r["subquery"]["SelectStmt"].get(select) == sj::SUCCESS) {
        select_columns(select, t);
      } else {
        t.source_unknown = true;
      }
    } else if (kind == "RangeFunction") {
      // A function returning a scalar names its column after the alias or the function.
      std::string_view alias;
      if (r["alias"]["aliasname"].get_string().get(alias) == sj::SUCCESS) {
        t.source_columns.emplace_back(alias);
      }
      bool ordinality = false;
      if (r["ordinality"].get_bool().get(ordinality) == sj::SUCCESS && ordinality) {
        t.source_columns.emplace_back("ordinality");
      }
      t.source_unknown = true;  // a function returning a row type: columns from the catalog
    } else {
      t.source_unknown = true;  // a table, a CTE: its columns are in the catalog
    }
  }
}

static void select_columns(sj::dom::element select, Target& t) {
  sj::dom::array values;
  if (select["valuesLists"].get_array().get(values) == sj::SUCCESS && values.size() > 0) {
    sj::dom::array first;
    if (values.at(0)["List"]["items"].get_array().get(first) == sj::SUCCESS) {
      for (std::size_t i = 1; i <= first.size(); ++i) {
        t.source_columns.push_back("column" + std::to_string(i));
      }
    }
    return;
  }
  sj::dom::array targets;
  if (select["targetList"].get_array().get(targets) != sj::SUCCESS) {
    t.source_unknown = true;  // UNION and the like: not followed
    return;
  }
  for (sj::dom::element rt : targets) {
    std::string_view name;
    sj::dom::array fields;
    if (rt["ResTarget"]["name"].get_string().get(name) == sj::SUCCESS) {
      t.source_columns.emplace_back(name);
    } else if (rt["ResTarget"]["val"]["ColumnRef"]["fields"].get_array().get(fields) ==
               sj::SUCCESS) {
      const std::string_view last = str(fields.at(fields.size() - 1).value_unsafe());
      if (last.empty()) t.source_unknown = true;  // s.*
      t.source_columns.emplace_back(last);
    } else {
      t.source_unknown = true;  // PostgreSQL names it ?column? or after a function
    }
  }
}

// The names a FROM list declares (aliases, else relation names).
static void declared_names(sj::dom::element from, std::vector<std::string_view>& out) {
  const sj::dom::element_type type = from.type();
  if (type == sj::dom::element_type::ARRAY) {
    for (sj::dom::element c : sj::dom::array(from.get_array().value_unsafe())) {
      declared_names(c, out);
    }
    return;
  }
  if (type != sj::dom::element_type::OBJECT) return;
  for (auto f : sj::dom::object(from.get_object().value_unsafe())) {
    if (f.key == "JoinExpr") {
      sj::dom::element side;
      if (f.value["larg"].get(side) == sj::SUCCESS) declared_names(side, out);
      if (f.value["rarg"].get(side) == sj::SUCCESS) declared_names(side, out);
      continue;
    }
    std::string_view n;
    if (f.value["alias"]["aliasname"].get_string().get(n) == sj::SUCCESS ||
        f.value["relname"].get_string().get(n) == sj::SUCCESS) {
      out.push_back(n);
    }
  }
}

bool refers_target(sj::dom::element e, const Target* t) {
  if (t == nullptr) return has_column(e);
  const sj::dom::element_type type = e.type();
  if (type == sj::dom::element_type::ARRAY) {
    for (sj::dom::element c : sj::dom::array(e.get_array().value_unsafe())) {
      if (refers_target(c, t)) return true;
    }
    return false;
  }
  if (type != sj::dom::element_type::OBJECT) return false;
  for (auto f : sj::dom::object(e.get_object().value_unsafe())) {
    if (f.key == "CurrentOfExpr") return true;  // WHERE CURRENT OF: one row
    if (f.key == "ColumnRef") {
      sj::dom::array fields;
      if (f.value["fields"].get_array().get(fields) != sj::SUCCESS) continue;
      if (fields.size() >= 2) {
        if (!t->qualifier.empty() &&
            str(fields.at(fields.size() - 2).value_unsafe()) == t->qualifier) {
          return true;
        }
        continue;
      }
      const std::string_view name = str(fields.at(0).value_unsafe());
      const bool of_source = std::find(t->source_columns.begin(), t->source_columns.end(), name) !=
                             t->source_columns.end();
      if (of_source) continue;
      if (!t->source_unknown && !t->in_subquery) return true;
      t->ambiguous = true;  // another relation's, perhaps: it does not restrict the target
      continue;
    }
    sj::dom::element from;
    if (f.key == "SelectStmt" && f.value["fromClause"].get(from) == sj::SUCCESS) {
      // A subquery: its FROM may shadow the target's name, and unqualified columns resolve to
      // its own relations first.
      std::vector<std::string_view> names;
      declared_names(from, names);
      Target inner = *t;
      inner.in_subquery = true;
      if (std::find(names.begin(), names.end(), t->qualifier) != names.end()) {
        inner.qualifier.clear();
      }
      const bool refers = refers_target(f.value, &inner);
      t->ambiguous = t->ambiguous || inner.ambiguous;
      if (refers) return true;
      continue;
    }
    if (refers_target(f.value, t)) return true;
  }
  return false;
}

}  // namespace pgwarden::policy::tree
