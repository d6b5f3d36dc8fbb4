// The statement classifier: PostgreSQL's own parser (libpg_query, PostgreSQL 15) is the judge.
// A Hyperscan pre-filter over the raw text first decides whether a statement could be anything
// but a plain read; only candidates are parsed, and the parse tree is walked for the classes a
// policy can allow, deny or hold. Literals, comments and quoted identifiers never make a class
// by themselves: they are parsed, not pattern-matched. Sans-I/O; one Classifier per core.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/result.h"

struct hs_database;
struct hs_scratch;

namespace pgwarden::policy {

enum class StatementClass : std::uint8_t {
  Select,
  Insert,
  Update,
  Delete,
  Merge,
  CopyFrom,
  CopyTo,
  CopyProgram,
  CopyOptions,  // COPY TO with DELIMITER, QUOTE, ESCAPE or FORCE_QUOTE (values written otherwise)
  SelectInto,
  Ddl,
  Drop,
  Truncate,
  Alter,
  Grant,
  Rule,
  Function,  // CREATE FUNCTION / PROCEDURE
  DoBlock,
  DynamicSql,  // EXECUTE in PL/pgSQL, or a body that cannot be analysed (other languages)
  DeleteWithoutWhere,
  UpdateWithoutWhere,
  TautologicalWhere,
  WriteInCte,
  ExplainAnalyzeWrite,
  RoleChange,
  DangerousFunction,
  ServerFile,     // COPY to or from a server file, functions that read, list or write its files
  WriteFunction,  // a function that changes something: sequences, large objects, slots, WAL...
  QueryInString,  // a function that reads tables or runs a query named in a string argument
  Transaction,
  Set,  // SET / SHOW / RESET / DISCARD of ordinary settings
  Call,
  Maintenance,  // VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, LOAD
  Lock,         // LOCK, SELECT ... FOR UPDATE/SHARE
  Listen,       // LISTEN, UNLISTEN, NOTIFY
  Cursor,       // DECLARE, FETCH, MOVE, CLOSE
  Prepare,      // PREPARE, EXECUTE, DEALLOCATE (the prepared query is judged at PREPARE)
  Explain,
  Utility,      // anything else
  Unparseable,  // PostgreSQL's parser refuses it (PostgreSQL would too)
  kCount
};
using ClassSet = std::uint64_t;
constexpr ClassSet bit(StatementClass c) {
  return ClassSet{1} << static_cast<unsigned>(c);
}
// Not a class (no policy names it): set beside the classes of a statement after which the
// search_path may reach schemas nobody judged from its text: SET or RESET of search_path to its
// default, or naming "$user" (however spelled), RESET ALL, DISCARD ALL.
inline constexpr ClassSet kPathMoves = ClassSet{1} << 63;
// Not a class either: a text of more than one statement (PolicyEngine::classes_of sets it).
inline constexpr ClassSet kMultiStatement = ClassSet{1} << 62;
static_assert(static_cast<unsigned>(StatementClass::kCount) < 62);
const char* class_name(StatementClass c);
std::string ascii_lower(std::string_view s);  // as PostgreSQL folds unquoted identifiers
// The schemas of a search_path value ("hr, \"Public\"" -> hr, Public), as PostgreSQL reads them.
std::vector<std::string> split_search_path(std::string_view text);
std::optional<StatementClass> class_from_name(std::string_view name);
std::string class_names(ClassSet s);  // "delete, delete_without_where"
// Classes that change data, schema, privileges or the session's role, or run code.
ClassSet write_classes();
// The classes a call of the function makes (lower-case, last part of the name), whatever the
// rule's dangerous_functions: server_file, write_function, query_in_string; 0 for most.
ClassSet function_classes(std::string_view lower_name);

struct Analysis {
  ClassSet classes = 0;
  bool parsed = false;              // went through the parser (pre-filter hit)
  std::vector<std::string> tables;  // "schema.name" or "name", lower-case as PostgreSQL folds
  std::string dangerous_function;   // the first one called
  std::vector<std::string> classed_functions;  // calls that made a class by function_classes
  std::vector<std::string> search_path;        // schemas a SET search_path names, lower-case
  // Why a condition was found not to restrict its target when it may (unqualified columns).
  std::string scope_hint;
  std::size_t statements = 0;  // in a multi-statement string
  // The decision looked at constant values (a WHERE that does not refer to the row): texts
  // differing only in numbers may be judged differently, so no shape-keyed caching.
  bool literal_sensitive = false;
  // pgwarden's own limits kept it from analysing the statement (a parse tree nested deeper than
  // its reader follows, the parser's stack): never to be taken for unparseable, which PostgreSQL
  // would refuse too. Its classes are then every class (fail closed).
  bool unanalysable = false;
  std::string why_unanalysable;

  // The first function called that makes class `c`, or empty.
  std::string function_of(StatementClass c) const {
    for (const std::string& f : classed_functions) {
      if ((function_classes(f) & bit(c)) != 0) return f;
    }
    return {};
  }
};

// Compiled pre-filter; immutable, shared by cores (each has its own scratch).
class Prefilter {
 public:
  // Keywords of every risky construct, plus the configured function names and extra literals
  // (e.g. table names that some rule forbids).
  static protocol::Result<std::shared_ptr<const Prefilter>> build(
      const std::vector<std::string>& dangerous_functions, const std::vector<std::string>& extra);
  ~Prefilter();
  hs_database* db() const noexcept { return db_; }
  // Whether the pre-filter answers the same for every text of shape `shape` (shape_of in
  // rules.h): when no pattern can match across the numbers shape_of replaces, or next to one.
  bool same_for_shape(std::string_view shape) const noexcept;
  // The same, told by shape_of's `number_before_d` of the text (no pass over the shape).
  bool same_for_numbers(bool number_before_d) const noexcept {
    return numbers_unseen_ && !number_before_d;
  }

 private:
  hs_database* db_ = nullptr;
  bool numbers_unseen_ = false;  // no literal can match a number's bytes (see build)
};

class Classifier {
 public:
  Classifier();
  ~Classifier();
  Classifier(const Classifier&) = delete;
  Classifier& operator=(const Classifier&) = delete;

  // Classifies `sql` (one Query string, possibly several statements, or one Parse text). A text
  // with a backslash is judged as PostgreSQL would read it with standard_conforming_strings on
  // and off, and has the classes of both readings: whichever the server uses when it runs it
  // (the setting can change in flight, in the same pipeline), it was judged.
  Analysis analyze(std::string_view sql, const Prefilter& prefilter,
                   const std::vector<std::string>& dangerous_functions);
  // Without the pre-filter: always parse (tests, and rules that need every statement parsed).
  Analysis analyze_parsed(std::string_view sql,
                          const std::vector<std::string>& dangerous_functions);
  // The pre-filter alone: false when `sql` has no keyword of anything but a plain read (it is
  // then classed select without parsing); true when it must be parsed.
  bool needs_parse(std::string_view sql, const Prefilter& prefilter);
  // What a statement without any pre-filter keyword is taken to be.
  static Analysis plain_read();
  // One reading of `sql`, with backslashes lexed as standard_conforming_strings on or off.
  Analysis analyze_once(std::string_view sql, const std::vector<std::string>& dangerous_functions,
                        bool standard_strings);
  // Scratch space is sized for one pre-filter database; call when the policy changes.
  void forget_prefilter() noexcept { scratch_for_ = nullptr; }

 private:
  struct Parsers;
  std::unique_ptr<Parsers> parsers_;  // this core's JSON parsers, one per nesting level
  hs_scratch* scratch_ = nullptr;
  const hs_database* scratch_for_ = nullptr;  // the database scratch_ was sized for
};

}  // namespace pgwarden::policy
