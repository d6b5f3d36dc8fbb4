#include "policy/classifier.h"
#include "policy/parse_tree.h"

#include <hs/hs.h>
#include <pg_query.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cctype>

// libpg_query's copy of PostgreSQL's lexer reads this per-thread setting (scan.l): with it off,
// a backslash in '...' escapes the next character.

namespace pgwarden::policy {

namespace {

namespace sj = simdjson;
using C = StatementClass;
using namespace tree;  // NOLINT: the parse tree's readers

constexpr int kMaxDepth = 4;

using tree::ScsScope;

struct Walker {
  const std::vector<std::string>& dangerous;
  Analysis& out;
  sj::dom::parser* parsers;  // one per nesting level: a nested parse must not reuse the outer DOM
  int depth = 0;             // nesting of bodies (functions, DO) analysed recursively

  struct Ctx {
    bool cte = false;
    bool explain_analyze = false;
    bool definition = false;  // inside a definition that names functions (aggregate, operator...)
    bool stored_setting = false;  // a function's setting, stored to apply when it is called
  };

  void add(C c) { out.classes |= bit(c); }

  void write(C c, const Ctx& ctx) {
    add(c);
    if (ctx.cte) add(C::WriteInCte);
    if (ctx.explain_analyze) add(C::ExplainAnalyzeWrite);
  }

  // A condition that keeps every row of the target: one that does not refer to it at all (WHERE
  // true, WHERE 1 = 1, WHERE 2 > 1, WHERE EXISTS (SELECT 1), a condition on another relation
  // alone) unless recognisably false; WHERE id = id; an OR with such an arm; an AND of only such
  // parts. Deciding it by constant values makes the analysis depend on literals (see
  // Analysis::literal_sensitive).
  bool tautology(sj::dom::element e, const Target* t) {
    if (!refers_target(e, t)) {
      out.literal_sensitive = true;
      return !always_false(e);
    }
    sj::dom::element expr;
    if (e["A_Expr"].get(expr) == sj::SUCCESS) {
      const std::string_view op = op_name(expr);
      if (op != "=" && op != "<=" && op != ">=") return false;
      sj::dom::element l, r;
      if (expr["lexpr"].get(l) != sj::SUCCESS || expr["rexpr"].get(r) != sj::SUCCESS) return false;
      const std::string lcol = column(l), rcol = column(r);
      return !lcol.empty() && lcol == rcol;
    }
    std::string_view bop;
    sj::dom::array args;
    if (!bool_expr(e, bop, args)) return false;
    if (bop == "OR_EXPR") {
      for (sj::dom::element a : args) {
        if (tautology(a, t)) return true;
      }
      return false;
    }
    if (bop == "AND_EXPR") {
      for (sj::dom::element a : args) {
        if (!tautology(a, t)) return false;
      }
      return true;
    }
    return false;
  }

  // DELETE / UPDATE: without WHERE, or with one that keeps every row of the target.
  void where(sj::dom::element stmt, C without, const char* sources) {
    Target t = target_of(stmt);
    sj::dom::array from;
    if (stmt[sources].get_array().get(from) == sj::SUCCESS) {
      for (sj::dom::element rel : from) source_columns(rel, t);
    }
    sj::dom::element w;
    if (stmt["whereClause"].get(w) != sj::SUCCESS) {
      add(without);
    } else if (tautology(w, &t)) {
      add(C::TautologicalWhere);
      scope_hint(t);
    }
  }

  void scope_hint(const Target& t) {
    if (t.ambiguous && out.scope_hint.empty()) {
      out.scope_hint =
          "an unqualified column may be another relation's; qualify the target's columns";
    }
  }

  // MERGE: each WHEN MATCHED ... UPDATE / DELETE changes every row of the target that the join
  // condition matches; unless the join condition or the action's own condition restricts the
  // target, that is every row (ON true, ON 1 = 1, a condition on the source alone).
  void merge(sj::dom::element stmt) {
    Target t = target_of(stmt);
    sj::dom::element source, join;
    if (stmt["sourceRelation"].get(source) == sj::SUCCESS) source_columns(source, t);
    const bool has_join = stmt["joinCondition"].get(join) == sj::SUCCESS;
    if (has_join && !tautology(join, &t)) return;  // the join restricts the target
    const bool join_refers = has_join && refers_target(join, &t);
    sj::dom::array clauses;
    if (stmt["mergeWhenClauses"].get_array().get(clauses) != sj::SUCCESS) return;
    for (sj::dom::element c : clauses) {
      const sj::dom::element w = c["MergeWhenClause"].value_unsafe();
      bool matched = false;
      if (w["matched"].get_bool().get(matched) != sj::SUCCESS || !matched) continue;
      std::string_view cmd;
      if (w["commandType"].get_string().get(cmd) != sj::SUCCESS) continue;
      const C without = cmd == "CMD_UPDATE"   ? C::UpdateWithoutWhere
                        : cmd == "CMD_DELETE" ? C::DeleteWithoutWhere
                                              : C::kCount;
      if (without == C::kCount) continue;  // DO NOTHING
      sj::dom::element cond;
      const bool has_cond = w["condition"].get(cond) == sj::SUCCESS;
      if (has_cond && !tautology(cond, &t)) continue;  // the action restricts the target
      add(join_refers || (has_cond && refers_target(cond, &t)) ? C::TautologicalWhere : without);
      scope_hint(t);
    }
  }

  void function_call(sj::dom::element call) {
    sj::dom::array names;
    if (call["funcname"].get_array().get(names) != sj::SUCCESS || names.size() == 0) return;
    const std::string_view name = str(names.at(names.size() - 1).value_unsafe());
    named_function(name);
    if (ascii_lower(name) == "set_config") search_path_by_function(call);
    if ((function_classes(ascii_lower(name)) & bit(C::QueryInString)) == 0) return;
    sj::dom::array args;
    if (call["args"].get_array().get(args) == sj::SUCCESS) {
      for (sj::dom::element a : args) string_argument(a);
    }
  }

  // set_config('search_path', value, ...): the schemas, like SET's; a setting name or value
  // computed at run time is a search_path nobody can read here (an empty entry).
  void search_path_by_function(sj::dom::element call) {
    sj::dom::array args;
    std::string_view setting, value;
    auto constant = [](sj::dom::element a, std::string_view& out) {
      sj::dom::element inner;
      while (a["TypeCast"]["arg"].get(inner) == sj::SUCCESS) a = inner;
      return a["A_Const"]["sval"]["sval"].get_string().get(out) == sj::SUCCESS;
    };
    if (call["args"].get_array().get(args) != sj::SUCCESS || args.size() < 2 ||
        !constant(args.at(0).value_unsafe(), setting)) {
      out.search_path.emplace_back();
      return;
    }
    if (ascii_lower(setting) != "search_path") return;
    if (!constant(args.at(1).value_unsafe(), value)) {
      out.search_path.emplace_back();
      return;
    }
    for (std::string& schema : split_search_path(value)) {
      if (schema == "$user") out.classes |= kPathMoves;
      out.search_path.push_back(std::move(schema));
    }
  }

  // An argument of a function that reads what a string names: a constant that parses as SQL is
  // judged as the statement it is; another constant is taken for a table's name; anything
  // computed is dynamic SQL (nobody can tell what it will name).
  void string_argument(sj::dom::element a) {
    sj::dom::element inner;
    if (a["TypeCast"]["arg"].get(inner) == sj::SUCCESS) return string_argument(inner);
    if (has(a, "A_Const")) {
      std::string_view text;
      if (a["A_Const"]["sval"]["sval"].get_string().get(text) != sj::SUCCESS) return;
      if (text.empty()) return;
      if (depth >= kMaxDepth) return opaque_body();
      Walker sql{dangerous, out, parsers, depth + 1};
      if (sql.parse(text)) return;
      std::string name = ascii_lower(text);  // as regclass reads an unquoted name
      std::erase(name, '"');
      if (std::find(out.tables.begin(), out.tables.end(), name) == out.tables.end()) {
        out.tables.push_back(std::move(name));
      }
      return;
    }
    const sj::dom::element_type t = a.type();
    if (t == sj::dom::element_type::OBJECT && !has(a, "A_Const")) add(C::DynamicSql);
  }

  // A function the statement calls, or makes something call (an aggregate's transition function,
  // an operator's, a cast's, a trigger's): as if it were called.
  void named_function(std::string_view called) {
    const std::string name = ascii_lower(called);
    if (name == "set_config") add(C::RoleChange);  // set_config('role', ...) is SET ROLE
    if (const ClassSet c = function_classes(name); c != 0) {
      out.classes |= c;
      if (std::find(out.classed_functions.begin(), out.classed_functions.end(), name) ==
          out.classed_functions.end()) {
        out.classed_functions.push_back(name);
      }
    }
    if (std::find(dangerous.begin(), dangerous.end(), name) != dangerous.end()) {
      add(C::DangerousFunction);
      if (out.dangerous_function.empty()) out.dangerous_function = name;
    }
  }

  // A body we cannot see into (another language, a PL/pgSQL error): its own class.
  void opaque_body() { add(C::DynamicSql); }

  // PostgreSQL lexes a body when it runs, under the standard_conforming_strings in force then:
  // a body with a backslash is read both ways, whatever the statement around it gave.
  template <class F>
  bool both_readings(std::string_view text, F&& read) {
    if (text.find('\\') == std::string_view::npos) return read();
    bool any = false;
    for (const bool scs : {true, false}) {
      ScsScope scope(scs);
      any = read() || any;
    }
    return any;
  }

  void sql_body(std::string_view text) {
    if (depth >= kMaxDepth) return opaque_body();
    if (!both_readings(text, [&] {
          Walker inner{dangerous, out, parsers, depth + 1};
          return inner.parse(text);
        })) {
      opaque_body();
    }
  }

  // PL/pgSQL (DO blocks and function bodies): every embedded SQL statement and expression is
  // classified; EXECUTE of a computed string is dynamic SQL.
  void plpgsql_body(std::string_view body) {
    if (!both_readings(body, [&] { return plpgsql_reading(body); })) opaque_body();
  }

  // One reading of a PL/pgSQL body; false when it does not parse.
  bool plpgsql_reading(std::string_view body) {
    if (depth >= kMaxDepth || body.find("$pgw$") != std::string_view::npos) {
      opaque_body();
      return true;
    }
    std::string fn = "CREATE FUNCTION pgw_body() RETURNS void LANGUAGE plpgsql AS $pgw$";
    fn.append(body).append("$pgw$");
    std::vector<std::string> queries;
    bool dynamic = false;
    {
      PgQueryPlpgsqlParseResult r = pg_query_parse_plpgsql(fn.c_str());
      struct Free {  // also when the walk throws
        PgQueryPlpgsqlParseResult& r;
        ~Free() { pg_query_free_plpgsql_parse_result(r); }
      } free_result{r};
      if (r.error != nullptr || r.plpgsql_funcs == nullptr) return false;
      sj::dom::parser local;
      sj::dom::element tree;
      if (local.parse(std::string_view(r.plpgsql_funcs)).get(tree) != sj::SUCCESS) {
        dynamic = true;
      } else {
        collect_plpgsql(tree, queries, dynamic);
      }
    }
    if (dynamic) add(C::DynamicSql);
    for (const std::string& q : queries) {
      Walker inner{dangerous, out, parsers, depth + 1};
      if (inner.parse(q)) continue;
      // An expression or assignment ("x := expr", "n > 0"): look at it as a SELECT.
      std::string_view e = q;
      if (const std::size_t assign = e.find(":="); assign != std::string_view::npos) {
        e.remove_prefix(assign + 2);
      }
      Walker expr{dangerous, out, parsers, depth + 1};
      if (!expr.parse("SELECT " + std::string(e))) opaque_body();
    }
    return true;
  }

  static void collect_plpgsql(sj::dom::element e, std::vector<std::string>& queries,
                              bool& dynamic) {
    sj::dom::array arr;
    if (e.get_array().get(arr) == sj::SUCCESS) {
      for (sj::dom::element c : arr) collect_plpgsql(c, queries, dynamic);
      return;
    }
    sj::dom::object obj;
    if (e.get_object().get(obj) != sj::SUCCESS) return;
    for (auto f : obj) {
      if (f.key == "PLpgSQL_stmt_dynexecute" || f.key == "PLpgSQL_stmt_dynfors" ||
          f.key == "PLpgSQL_stmt_open") {
        dynamic = true;
      }
      if (f.key == "PLpgSQL_expr") {
        std::string_view q;
        if (f.value["query"].get_string().get(q) == sj::SUCCESS) queries.emplace_back(q);
      }
      collect_plpgsql(f.value, queries, dynamic);
    }
  }

  // The body and language of CREATE FUNCTION / DO (DefElem "as" and "language").
  void routine_body(sj::dom::element options_or_args, bool is_do) {
    std::string language = is_do ? "plpgsql" : "sql";
    std::string_view body;
    bool have_body = false;
    sj::dom::array items;
    if (options_or_args.get_array().get(items) == sj::SUCCESS) {
      for (sj::dom::element d : items) {
        std::string_view name;
        if (d["DefElem"]["defname"].get_string().get(name) != sj::SUCCESS) continue;
        sj::dom::element arg;
        if (d["DefElem"]["arg"].get(arg) != sj::SUCCESS) continue;
        if (name == "language") language = ascii_lower(str(arg));
        if (name == "as") {
          sj::dom::array list;
          if (arg["List"]["items"].get_array().get(list) == sj::SUCCESS && list.size() > 0) {
            body = str(list.at(0).value_unsafe());
          } else {
            body = str(arg);
          }
          have_body = true;
        }
      }
    }
    if (!have_body) return;  // BEGIN ATOMIC bodies are part of the tree and walked as such
    if (language == "sql") {
      sql_body(body);
    } else if (language == "plpgsql") {
      plpgsql_body(body);
    } else {
      opaque_body();
    }
  }

  void table(sj::dom::element rv) {
    std::string_view rel, schema;
    if (rv["relname"].get_string().get(rel) != sj::SUCCESS) return;
    std::string name;
    if (rv["schemaname"].get_string().get(schema) == sj::SUCCESS) {
      name = std::string(schema) + ".";
    }
    name += rel;
    // The views over the file-reading functions (pg_hba_file_rules, pg_file_settings...).
    out.classes |= function_classes(ascii_lower(rel)) & bit(C::ServerFile);
    if (std::find(out.tables.begin(), out.tables.end(), name) == out.tables.end()) {
      out.tables.push_back(std::move(name));
    }
  }

  static bool starts(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

  // A boolean option set off as PostgreSQL reads it (defGetBoolean): 0, or a prefix of false
  // or no, or of / off, in any case.
  static bool option_off(sj::dom::element def) {
    sj::dom::element arg;
    if (def["arg"].get(arg) != sj::SUCCESS) return false;
    sj::dom::element integer;
    if (arg["Integer"].get(integer) == sj::SUCCESS) {
      std::int64_t n = 0;
      return integer["ival"].get_int64().get(n) != sj::SUCCESS || n == 0;
    }
    std::string_view raw = str(arg);
    if (raw.empty()) return false;
    const std::string v = ascii_lower(raw);
    auto prefix_of = [&](std::string_view word, std::size_t min) {
      return v.size() >= min && v.size() <= word.size() && word.substr(0, v.size()) == v;
    };
    return v == "0" || prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2);
  }

  // The schemas of SET search_path (identifiers or strings, several in one string too).
  void search_path(sj::dom::element args) {
    sj::dom::array items;
    if (args.get_array().get(items) != sj::SUCCESS) return;
    for (sj::dom::element item : items) {
      std::string_view text;
      if (item["A_Const"]["sval"]["sval"].get_string().get(text) != sj::SUCCESS) continue;
      for (std::string& name : split_search_path(text)) out.search_path.push_back(std::move(name));
    }
  }

  static bool role_setting(std::string_view name) {
    const std::string n = ascii_lower(name);
    return n == "role" || n == "session_authorization";
  }

  void walk(sj::dom::element e, Ctx ctx) {
    const sj::dom::element_type type = e.type();
    if (type == sj::dom::element_type::ARRAY) {
      const sj::dom::array arr = e.get_array().value_unsafe();
      for (sj::dom::element c : arr) walk(c, ctx);
      return;
    }
    if (type != sj::dom::element_type::OBJECT) return;
    const sj::dom::object obj = e.get_object().value_unsafe();
    for (auto f : obj) {
      const std::string_view k = f.key;
      const sj::dom::element v = f.value;
      Ctx child = ctx;
      // Node types are capitalised; field names are not (only withClause matters among them).
      if (k.empty() || k[0] < 'A' || k[0] > 'Z') {
        if (k == "withClause") child.cte = true;
        // The relation of COPY, INSERT, UPDATE, DELETE and MERGE comes without its node name.
        if (k == "relation" && has(v, "relname")) table(v);
        // SELECT ... INTO t UNION ...: INTO is on a set operation's branch (no node name).
        if ((k == "larg" || k == "rarg") && has(v, "intoClause")) write(C::SelectInto, ctx);
        const sj::dom::element_type t = v.type();
        if (t == sj::dom::element_type::ARRAY || t == sj::dom::element_type::OBJECT) {
          walk(v, child);
        }
        continue;
      }
      if (k == "String" && ctx.definition) {
        // A function the server calls later: set_config there sets what nobody can read here
        // (CREATE AGGREGATE ... SFUNC = set_config, then sp('search_path'...)).
        named_function(str(e));
        if (ascii_lower(str(e)) == "set_config") out.search_path.emplace_back();
      }
      if (k == "A_Indirection" || k == "ColumnRef") {
        // (x).f and t.f call f(x) when f is no column: as if called.
        sj::dom::array parts;
        const char* list = k == "ColumnRef" ? "fields" : "indirection";
        if (v[list].get_array().get(parts) == sj::SUCCESS) {
          if (k == "A_Indirection") {
            for (sj::dom::element part : parts) {
              if (const std::string_view n = str(part); !n.empty()) named_function(n);
            }
          } else if (parts.size() >= 2) {
            named_function(str(parts.at(parts.size() - 1).value_unsafe()));
          }
        }
      }
      if (k == "A_Const" || k == "ColumnRef" || k == "ResTarget" || k == "String" ||
          k == "A_Expr" || k == "TypeCast" || k == "ParamRef" || k == "BoolExpr" || k == "A_Star" ||
          k == "Integer" || k == "SortBy" || k == "JoinExpr") {
        walk(v, child);  // frequent, never a class by themselves
        continue;
      }
      if (k == "DefineStmt" || k == "CreateTrigStmt" || k == "CreateCastStmt" ||
          k == "CreateOpClassStmt" || k == "CreateOpFamilyStmt" || k == "AlterOpFamilyStmt" ||
          k == "CreateConversionStmt" || k == "CreateEventTrigStmt" || k == "CreateTransformStmt" ||
          k == "AlterOperatorStmt" || k == "AlterTypeStmt" || k == "CreatePLangStmt" ||
          k == "CreateFdwStmt" || k == "AlterFdwStmt") {
        child.definition = true;  // the functions it names run later, called by the server
      }
      if (k == "AlterFunctionStmt") child.stored_setting = true;
      // Who may become which role, or which names roles have: "$user" may reach other schemas
      // (PolicyStage reads the roles the session user may become again after it).
      std::string_view renamed;
      if (k == "CreateRoleStmt" || k == "AlterRoleStmt" || k == "GrantRoleStmt" ||
          (k == "RenameStmt" && v["renameType"].get_string().get(renamed) == sj::SUCCESS &&
           renamed == "OBJECT_ROLE")) {
        out.classes |= kPathMoves;
      }
      // A schema renamed takes its tables under another name: it refers to all of them.
      std::string_view schema;
      if (k == "RenameStmt" && renamed == "OBJECT_SCHEMA" &&
          v["subname"].get_string().get(schema) == sj::SUCCESS) {
        out.tables.push_back(std::string(schema) + ".*");
      }
      if (k == "SelectStmt") {
        add(C::Select);
        if (has(v, "intoClause")) write(C::SelectInto, ctx);
        if (has(v, "lockingClause")) add(C::Lock);
      } else if (k == "InsertStmt") {
        write(C::Insert, ctx);
      } else if (k == "UpdateStmt") {
        write(C::Update, ctx);
        where(v, C::UpdateWithoutWhere, "fromClause");
        // pg_settings' update rule calls set_config for every row it changes.
        std::string_view rel;
        if (v["relation"]["relname"].get_string().get(rel) == sj::SUCCESS &&
            ascii_lower(rel) == "pg_settings") {
          named_function("set_config");
        }
      } else if (k == "DeleteStmt") {
        write(C::Delete, ctx);
        where(v, C::DeleteWithoutWhere, "usingClause");
      } else if (k == "MergeStmt") {
        write(C::Merge, ctx);
        merge(v);
      } else if (k == "CopyStmt") {
        bool from = false, program = false;
        if (v["is_from"].get_bool().get(from) != sj::SUCCESS) from = false;
        if (v["is_program"].get_bool().get(program) != sj::SUCCESS) program = false;
        if (program) add(C::CopyProgram);
        if (!program && has(v, "filename")) add(C::ServerFile);  // neither STDIN nor STDOUT
        if (from) {
          write(C::CopyFrom, ctx);
        } else {
          add(C::CopyTo);
          // Options that change how values are written (escaped, quoted) hide them from
          // content detectors scanning the COPY data.
          sj::dom::array opts;
          if (v["options"].get_array().get(opts) == sj::SUCCESS) {
            for (sj::dom::element o : opts) {
              std::string_view n;
              if (o["DefElem"]["defname"].get_string().get(n) != sj::SUCCESS) continue;
              if (n == "delimiter" || n == "quote" || n == "escape" || n == "force_quote") {
                add(C::CopyOptions);
              }
            }
          }
        }
      } else if (k == "ExplainStmt") {
        add(C::Explain);
        bool analyze = false;
        sj::dom::array opts;
        if (v["options"].get_array().get(opts) == sj::SUCCESS) {
          for (sj::dom::element o : opts) {
            std::string_view n;
            if (o["DefElem"]["defname"].get_string().get(n) == sj::SUCCESS && n == "analyze") {
              analyze = !option_off(o["DefElem"]);
            }
            // ANALYZE 0 and ANALYZE 1 are texts of one shape that run differently: an option
            // given as a number makes the decision depend on its value.
            sj::dom::element arg;
            if (o["DefElem"]["arg"].get(arg) == sj::SUCCESS &&
                (has(arg, "Integer") || has(arg, "Float"))) {
              out.literal_sensitive = true;
            }
          }
        }
        // Without ANALYZE nothing inside runs, but the plan tells about the tables it reads:
        // their references count. With it, the statement runs for real.
        sj::dom::element q;
        if (!analyze) {
          if (v["query"].get(q) == sj::SUCCESS) {
            Analysis plan;
            Walker tables{dangerous, plan, parsers, depth};
            tables.walk(q, {});
            for (std::string& t : plan.tables) {
              if (std::find(out.tables.begin(), out.tables.end(), t) == out.tables.end()) {
                out.tables.push_back(std::move(t));
              }
            }
          }
          continue;
        }
        child.explain_analyze = true;
        if (v["query"].get(q) == sj::SUCCESS) walk(q, child);
        continue;
      } else if (k == "PrepareStmt" || k == "ExecuteStmt" || k == "DeallocateStmt") {
        add(C::Prepare);
      } else if (k == "TruncateStmt") {
        write(C::Truncate, ctx);
      } else if (k == "CreateFunctionStmt") {
        add(C::Function);
        add(C::Ddl);
        sj::dom::element opts;
        if (v["options"].get(opts) == sj::SUCCESS) routine_body(opts, false);
      } else if (k == "DoStmt") {
        add(C::DoBlock);
        sj::dom::element args;
        if (v["args"].get(args) == sj::SUCCESS) routine_body(args, true);
        continue;
      } else if (k == "RuleStmt") {
        add(C::Rule);
        add(C::Ddl);
      } else if (k == "VariableSetStmt") {
        std::string_view name;
        if (v["name"].get_string().get(name) != sj::SUCCESS) name = {};
        // Setting names are case-insensitive: SET "ROLE" is SET role.
        add(role_setting(name) ? C::RoleChange : C::Set);
        sj::dom::element args;  // absent for RESET, SET ... TO DEFAULT, FROM CURRENT
        std::string_view kind;
        if (v["kind"].get_string().get(kind) == sj::SUCCESS && kind == "VAR_RESET_ALL") {
          out.classes |= kPathMoves;
        }
        if (ascii_lower(name) == "search_path") {
          const std::size_t before = out.search_path.size();
          if (v["args"].get(args) == sj::SUCCESS) search_path(args);
          if (out.search_path.size() == before ||
              std::find(out.search_path.begin() + static_cast<std::ptrdiff_t>(before),
                        out.search_path.end(), "$user") != out.search_path.end()) {
            out.classes |= kPathMoves;  // the default, or whatever "$user" names
            // A function's SET clause resolves "$user" as whoever calls it: nobody can read
            // where it will reach.
            if (ctx.stored_setting) out.search_path.emplace_back();
          }
        }
      } else if (k == "VariableShowStmt") {
        add(C::Set);
      } else if (k == "DiscardStmt") {
        add(C::Set);
        std::string_view target;
        if (v["target"].get_string().get(target) != sj::SUCCESS || target == "DISCARD_ALL") {
          out.classes |= kPathMoves;
        }
      } else if (k == "AlterSystemStmt") {
        add(C::Alter);
        add(C::Ddl);
        // Applies to every session at the next configuration reload, where no statement shows
        // it: a search_path set so is one nobody can read here.
        std::string_view name;
        if (v["setstmt"]["name"].get_string().get(name) == sj::SUCCESS) {
          if (role_setting(name)) add(C::RoleChange);
          if (ascii_lower(name) == "search_path") out.search_path.emplace_back();
        }
      } else if (k == "AlterRoleSetStmt" || k == "AlterDatabaseSetStmt") {
        add(C::Alter);
        add(C::Ddl);
        std::string_view name;
        if (v["setstmt"]["name"].get_string().get(name) == sj::SUCCESS && role_setting(name)) {
          add(C::RoleChange);
        }
      } else if (k == "TransactionStmt") {
        add(C::Transaction);
        // Two-phase commit: PREPARE TRANSACTION keeps locks and rows past the session; COMMIT
        // PREPARED applies another transaction's writes.
        std::string_view kind;
        if (v["kind"].get_string().get(kind) == sj::SUCCESS &&
            (kind == "TRANS_STMT_PREPARE" || kind == "TRANS_STMT_COMMIT_PREPARED" ||
             kind == "TRANS_STMT_ROLLBACK_PREPARED")) {
          add(C::Utility);
        }
      } else if (k == "CallStmt") {
        add(C::Call);
        sj::dom::element call;  // the FuncCall's fields, not wrapped in a "FuncCall" key
        if (v["funccall"].get(call) == sj::SUCCESS) function_call(call);
      } else if (k == "VacuumStmt" || k == "ClusterStmt" || k == "ReindexStmt" ||
                 k == "CheckPointStmt" || k == "LoadStmt") {
        add(C::Maintenance);
      } else if (k == "LockStmt") {
        add(C::Lock);
      } else if (k == "ListenStmt" || k == "UnlistenStmt" || k == "NotifyStmt") {
        add(C::Listen);
      } else if (k == "DeclareCursorStmt" || k == "FetchStmt" || k == "ClosePortalStmt") {
        add(C::Cursor);
      } else if (k == "GrantStmt" || k == "GrantRoleStmt" || k == "AlterDefaultPrivilegesStmt" ||
                 k == "ReassignOwnedStmt") {
        add(C::Grant);
        add(C::Ddl);
      } else if (starts(k, "Drop") && k.size() > 4 && k.substr(k.size() - 4) == "Stmt") {
        add(C::Drop);
        add(C::Ddl);
      } else if (starts(k, "Alter") && k.substr(k.size() - 4) == "Stmt") {
        add(C::Alter);
        add(C::Ddl);
      } else if (k == "RenameStmt") {
        add(C::Alter);
        add(C::Ddl);
      } else if ((starts(k, "Create") && k.substr(k.size() - 4) == "Stmt") || k == "ViewStmt" ||
                 k == "IndexStmt" || k == "DefineStmt" || k == "CompositeTypeStmt" ||
                 k == "CommentStmt" || k == "RenameStmt" || k == "RefreshMatViewStmt" ||
                 k == "SecLabelStmt" || k == "ImportForeignSchemaStmt" ||
                 k == "CreateTableAsStmt") {
        add(C::Ddl);
        if (k == "CreateTableAsStmt") write(C::SelectInto, ctx);
      } else if (k == "FuncCall") {
        function_call(v);
      } else if (k == "RangeVar") {
        table(v);
      }
      walk(v, child);
    }
  }

  void unanalysable(std::string why) {
    if (!out.unanalysable) out.why_unanalysable = std::move(why);
    out.unanalysable = true;
  }

  // Parses and walks `sql`; false if PostgreSQL's parser refuses it (or pgwarden cannot follow
  // it: then out.unanalysable is set too).
  bool parse(std::string_view sql) {
    const std::string text(sql);  // NUL-terminated for libpg_query
    PgQueryParseResult r = pg_query_parse(text.c_str());
    struct Free {  // also when the walk throws
      PgQueryParseResult& r;
      ~Free() { pg_query_free_parse_result(r); }
    } free_result{r};
    bool ok = r.error == nullptr && r.parse_tree != nullptr;
    if (!ok && r.error != nullptr && r.error->message != nullptr &&
        std::string_view(r.error->message).find("stack depth") != std::string_view::npos) {
      unanalysable("its parse tree is deeper than pgwarden's parser follows");
    }
    if (ok) {
      sj::dom::element tree;
      ok = parsers[depth].parse(std::string_view(r.parse_tree)).get(tree) == sj::SUCCESS;
      if (!ok) unanalysable("its parse tree is nested deeper than pgwarden's reader follows");
      if (ok) {
        sj::dom::array stmts;
        if (tree["stmts"].get_array().get(stmts) == sj::SUCCESS) {
          for (sj::dom::element s : stmts) {
            const ClassSet before = out.classes;
            out.classes = 0;
            sj::dom::element stmt;
            if (s["stmt"].get(stmt) == sj::SUCCESS) walk(stmt, {});
            if (out.classes == 0) add(C::Utility);
            out.classes |= before;
            if (depth == 0) ++out.statements;
          }
        }
      }
    }
    return ok;
  }
};

int on_match(unsigned int, unsigned long long, unsigned long long, unsigned int, void* ctx) {
  *static_cast<bool*>(ctx) = true;
  return 1;  // one is enough
}

}  // namespace

struct Classifier::Parsers {
  sj::dom::parser levels[kMaxDepth + 1];
};

Classifier::Classifier() : parsers_(std::make_unique<Parsers>()) {}

Classifier::~Classifier() {
  hs_free_scratch(scratch_);
}

bool Classifier::needs_parse(std::string_view sql, const Prefilter& prefilter) {
  if (sql.size() >= (1u << 30)) return true;  // beyond Hyperscan's length: parse
  if (scratch_for_ != prefilter.db()) {       // hs_alloc_scratch is not cheap: once per database
    if (hs_alloc_scratch(prefilter.db(), &scratch_) != HS_SUCCESS) return true;  // parse, then
    scratch_for_ = prefilter.db();
  }
  bool hit = false;
  const hs_error_t rc = hs_scan(prefilter.db(), sql.data(), static_cast<unsigned>(sql.size()), 0,
                                scratch_, on_match, &hit);
  return hit || (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED);
}

Analysis Classifier::plain_read() {
  Analysis a;
  a.classes = bit(C::Select);  // no keyword of anything else: a plain read (or SET/SHOW/BEGIN)
  a.statements = 1;
  return a;
}

Analysis Classifier::analyze(std::string_view sql, const Prefilter& prefilter,
                             const std::vector<std::string>& dangerous_functions) {
  if (!needs_parse(sql, prefilter)) return plain_read();
  return analyze_parsed(sql, dangerous_functions);
}

namespace {

// Everything a statement could be: what an unanalysable one is taken for.
ClassSet every_class() {
  return (ClassSet{1} << static_cast<unsigned>(C::kCount)) - 1;
}

}  // namespace

Analysis Classifier::analyze_parsed(std::string_view sql,
                                    const std::vector<std::string>& dangerous_functions) {
  Analysis a = analyze_once(sql, dangerous_functions, true);
  if (sql.find('\\') == std::string_view::npos) return a;
  // A backslash may end a literal elsewhere with standard_conforming_strings off: judge that
  // reading too, and keep what either finds.
  Analysis off = analyze_once(sql, dangerous_functions, false);
  // A reading PostgreSQL's parser refuses is one the server refuses too, whatever the setting:
  // only readings that parse can run.
  const ClassSet unparseable = bit(C::Unparseable);
  if (off.classes == unparseable) return a;
  if (a.classes == unparseable) return off;
  a.classes |= off.classes;
  a.literal_sensitive = a.literal_sensitive || off.literal_sensitive;
  if (a.dangerous_function.empty()) a.dangerous_function = off.dangerous_function;
  a.search_path.insert(a.search_path.end(), off.search_path.begin(), off.search_path.end());
  if (a.scope_hint.empty()) a.scope_hint = off.scope_hint;
  for (std::string& f : off.classed_functions) {
    if (std::find(a.classed_functions.begin(), a.classed_functions.end(), f) ==
        a.classed_functions.end()) {
      a.classed_functions.push_back(std::move(f));
    }
  }
  for (std::string& t : off.tables) {
    if (std::find(a.tables.begin(), a.tables.end(), t) == a.tables.end()) {
      a.tables.push_back(std::move(t));
    }
  }
  a.statements = std::max(a.statements, off.statements);
  if (off.unanalysable && !a.unanalysable) {
    a.unanalysable = true;
    a.why_unanalysable = off.why_unanalysable;
  }
  return a;
}

Analysis Classifier::analyze_once(std::string_view sql,
                                  const std::vector<std::string>& dangerous_functions,
                                  bool standard_strings) {
  ScsScope scope(standard_strings);
  Analysis a;
  a.parsed = true;
  Walker w{dangerous_functions, a, parsers_->levels};
  try {
    if (!w.parse(sql)) {
      a.classes = bit(C::Unparseable);
      a.tables.clear();
      // Whether a text parses can depend on its numbers (1.1.1 does not where 1 does; nor 1.5
      // where a whole number must be): never a decision for its shape (attacker review).
      a.literal_sensitive = true;
    }
  } catch (const std::exception& e) {
    // A tree the walker did not expect (a field read that is not there): refused, never a crash
    // of the core that judges it (the parse results are freed as the walk unwinds).
    a.unanalysable = true;
    a.why_unanalysable =
        std::string("its parse tree has a shape pgwarden does not follow (") + e.what() + ")";
  }
  if (a.unanalysable) {
    a.classes = every_class();
    a.literal_sensitive = true;  // (as above: kept for its own text only)
  }
  return a;
}

}  // namespace pgwarden::policy
