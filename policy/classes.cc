// Statement class names, the functions that make a class by being called, and the pre-filter
// (Hyperscan) built from the keywords of every construct that is more than a plain read.
#include <hs/hs.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <unordered_map>

#include "policy/classifier.h"

namespace pgwarden::policy {

namespace {

using C = StatementClass;

constexpr std::array<const char*, static_cast<std::size_t>(C::kCount)> kNames = {
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "copy_from",
    "copy_to",
    "copy_program",
    "copy_options",
    "select_into",
    "ddl",
    "drop",
    "truncate",
    "alter",
    "grant",
    "rule",
    "function",
    "do_block",
    "dynamic_sql",
    "delete_without_where",
    "update_without_where",
    "tautological_where",
    "write_in_cte",
    "explain_analyze_write",
    "role_change",
    "dangerous_function",
    "server_file",
    "write_function",
    "query_in_string",
    "transaction",
    "set",
    "call",
    "maintenance",
    "lock",
    "listen",
    "cursor",
    "prepare",
    "explain",
    "utility",
    "unparseable",
};

// Keywords of every construct that is more than a plain read. A statement with none of them
// (case-insensitively, anywhere, even inside literals) cannot be anything the policy restricts,
// so it skips the parser. "u&" catches Unicode-escaped identifiers (U&"\0064...").
constexpr std::array<const char*, 45> kKeywords = {
    "insert",        "update",     "delete",  "merge",   "copy",     "drop",      "truncate",
    "alter",         "create",     "grant",   "revoke",  "comment",  "security",  "call",
    "execute",       "prepare",    "explain", "rule",    "function", "procedure", "role",
    "authorization", "set_config", "into",    "vacuum",  "analy",    "cluster",   "reindex",
    "checkpoint",    "lock",       "notify",  "listen",  "refresh",  "import",    "load",
    "reassign",      "discard",    "u&",      "declare", "cursor",   "owned",     "policy",
    "extension",     "nextval",    "share",
};

// Functions whose call makes a class, whatever the rule's dangerous_functions say (matched by the
// last part of the name, case-insensitively).
struct FunctionClass {
  const char* name;
  ClassSet classes;
};

constexpr ClassSet kFile = bit(C::ServerFile);
constexpr ClassSet kWrite = bit(C::WriteFunction);
constexpr ClassSet kString = bit(C::QueryInString);

constexpr FunctionClass kFunctions[] = {
    // Files on the database server: read, listed, written.
    {"pg_read_file", kFile},
    {"pg_read_binary_file", kFile},
    {"pg_read_file_old", kFile},
    {"pg_ls_dir", kFile},
    {"pg_stat_file", kFile},
    {"pg_ls_logdir", kFile},
    {"pg_ls_waldir", kFile},
    {"pg_ls_tmpdir", kFile},
    {"pg_ls_archive_statusdir", kFile},
    {"pg_ls_logicalsnapdir", kFile},
    {"pg_ls_logicalmapdir", kFile},
    {"pg_ls_replslotdir", kFile},
    {"pg_current_logfile", kFile},
    {"pg_hba_file_rules", kFile},
    {"pg_ident_file_mappings", kFile},
    {"pg_show_all_file_settings", kFile},
    {"pg_file_settings", kFile},  // a view over pg_show_all_file_settings()
    {"lo_import", kFile | kWrite},
    {"lo_export", kFile},
    {"pg_file_write", kFile | kWrite},  // adminpack
    {"pg_file_rename", kFile | kWrite},
    {"pg_file_unlink", kFile | kWrite},
    {"pg_file_sync", kFile},
    {"pg_logdir_ls", kFile},
    {"pg_file_read", kFile},  // adminpack 1.0
    {"pg_file_length", kFile},
    {"pg_logfile_rotate", kFile | kWrite},
    {"pg_get_wal_records_info", kFile},  // pg_walinspect: WAL files
    {"pg_get_wal_records_info_till_end_of_wal", kFile},
    {"pg_get_wal_record_info", kFile},
    {"pg_get_wal_stats", kFile},
    {"pg_get_wal_stats_till_end_of_wal", kFile},
    // Sequences and large objects.
    {"nextval", kWrite},
    {"setval", kWrite},
    {"lo_creat", kWrite},
    {"lo_create", kWrite},
    {"lo_put", kWrite},
    {"lowrite", kWrite},
    {"lo_unlink", kWrite},
    {"lo_truncate", kWrite},
    {"lo_truncate64", kWrite},
    {"lo_from_bytea", kWrite},
    // Replication slots and origins, WAL, notifications.
    {"pg_create_physical_replication_slot", kWrite},
    {"pg_create_logical_replication_slot", kWrite},
    {"pg_drop_replication_slot", kWrite},
    {"pg_copy_physical_replication_slot", kWrite},
    {"pg_copy_logical_replication_slot", kWrite},
    {"pg_replication_slot_advance", kWrite},
    {"pg_logical_slot_get_changes", kWrite},  // consumes what it returns
    {"pg_logical_slot_get_binary_changes", kWrite},
    {"pg_replication_origin_create", kWrite},
    {"pg_replication_origin_drop", kWrite},
    {"pg_replication_origin_advance", kWrite},
    {"pg_replication_origin_session_setup", kWrite},
    {"pg_replication_origin_session_reset", kWrite},
    {"pg_replication_origin_xact_setup", kWrite},
    {"pg_replication_origin_xact_reset", kWrite},
    {"pg_logical_emit_message", kWrite},
    {"pg_notify", kWrite | bit(C::Listen)},
    // The server itself: statistics, WAL, backups, recovery, configuration, other sessions.
    {"pg_stat_reset", kWrite},
    {"pg_stat_reset_shared", kWrite},
    {"pg_stat_reset_single_table_counters", kWrite},
    {"pg_stat_reset_single_function_counters", kWrite},
    {"pg_stat_reset_slru", kWrite},
    {"pg_stat_reset_replication_slot", kWrite},
    {"pg_stat_reset_subscription_stats", kWrite},
    {"pg_switch_wal", kWrite},
    {"pg_create_restore_point", kWrite},
    {"pg_backup_start", kWrite},
    {"pg_backup_stop", kWrite},
    {"pg_promote", kWrite},
    {"pg_wal_replay_pause", kWrite},
    {"pg_wal_replay_resume", kWrite},
    {"pg_import_system_collations", kWrite},
    {"pg_reload_conf", kWrite},
    {"pg_rotate_logfile", kWrite},
    {"pg_terminate_backend", kWrite},
    {"pg_cancel_backend", kWrite},
    {"pg_log_backend_memory_contexts", kWrite},
    // Indexes, transaction ids, and contrib modules that change what they inspect.
    {"brin_summarize_new_values", kWrite},
    {"brin_summarize_range", kWrite},
    {"brin_desummarize_range", kWrite},
    {"gin_clean_pending_list", kWrite},
    {"txid_current", kWrite},  // assigns a transaction id
    {"pg_current_xact_id", kWrite},
    {"pg_stat_statements_reset", kWrite},
    {"heap_force_kill", kWrite},  // pg_surgery
    {"heap_force_freeze", kWrite},
    {"pg_truncate_visibility_map", kWrite},  // pg_visibility
    // Tables or queries named in a string: the parse tree shows a string, not a reference.
    {"query_to_xml", kString},
    {"query_to_xmlschema", kString},
    {"query_to_xml_and_xmlschema", kString},
    {"table_to_xml", kString},
    {"table_to_xmlschema", kString},
    {"table_to_xml_and_xmlschema", kString},
    {"cursor_to_xml", kString},
    {"cursor_to_xmlschema", kString},
    {"schema_to_xml", kString},
    {"schema_to_xmlschema", kString},
    {"schema_to_xml_and_xmlschema", kString},
    {"database_to_xml", kString},
    {"database_to_xmlschema", kString},
    {"database_to_xml_and_xmlschema", kString},
    {"ts_stat", kString},
    {"ts_rewrite", kString},
    {"dblink", kString},  // dblink: queries, and tables read by name
    {"dblink_exec", kString},
    {"dblink_open", kString},
    {"dblink_fetch", kString},
    {"dblink_send_query", kString},
    {"dblink_get_result", kString},
    {"dblink_build_sql_insert", kString},
    {"dblink_build_sql_update", kString},
    {"dblink_build_sql_delete", kString},
    {"crosstab", kString},  // tablefunc
    {"crosstab2", kString},
    {"crosstab3", kString},
    {"crosstab4", kString},
    {"crosstab_hash", kString},
    {"connectby", kString},
    {"xpath_table", kString},   // xml2
    {"get_raw_page", kString},  // pageinspect: a table's raw pages, by name
    {"bt_metap", kString},
    {"bt_page_stats", kString},
    {"bt_page_items", kString},
};

}  // namespace

ClassSet function_classes(std::string_view lower_name) {
  static const std::unordered_map<std::string_view, ClassSet> by_name = [] {
    std::unordered_map<std::string_view, ClassSet> m;
    for (const FunctionClass& f : kFunctions) m[f.name] |= f.classes;
    return m;
  }();
  const auto it = by_name.find(lower_name);
  return it == by_name.end() ? 0 : it->second;
}

// As PostgreSQL's SplitIdentifierString: names separated by commas, whitespace around them
// skipped (its scanner's: space, tab, newline, carriage return, form feed; vertical tab too, as
// PostgreSQL 16 skips it), a quoted name taken as it is with "" for a quote, an unquoted one
// folded to lower case, each cut to 63 bytes (at a UTF-8 character's start). A list PostgreSQL
// would refuse yields the names read up to the fault (it sets no path at all).
std::vector<std::string> split_search_path(std::string_view text) {
  const auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  const auto truncate = [](std::string& name) {
    constexpr std::size_t kMaxIdentifier = 63;  // NAMEDATALEN - 1
    if (name.size() <= kMaxIdentifier) return;
    std::size_t cut = kMaxIdentifier;
    while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0) == 0x80) --cut;
    name.resize(cut);
  };
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size() && space(text[i])) ++i;
  while (i < text.size()) {
    std::string name;
    if (text[i] == '"') {
      for (++i;; ++i) {
        if (i >= text.size()) return out;  // mismatched quotes
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            name.push_back('"');
            ++i;
            continue;
          }
          ++i;
          break;
        }
        name.push_back(text[i]);
      }
    } else {
      const std::size_t start = i;
      while (i < text.size() && text[i] != ',' && !space(text[i])) ++i;
      if (i == start) return out;  // an empty unquoted name
      name = ascii_lower(text.substr(start, i - start));
    }
    truncate(name);
    if (!name.empty()) out.push_back(std::move(name));
    while (i < text.size() && space(text[i])) ++i;
    if (i == text.size()) break;
    if (text[i] != ',') return out;  // invalid syntax
    ++i;
    while (i < text.size() && space(text[i])) ++i;
  }
  return out;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

const char* class_name(StatementClass c) {
  return kNames[static_cast<std::size_t>(c)];
}

std::optional<StatementClass> class_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (name == kNames[i]) return static_cast<StatementClass>(i);
  }
  return std::nullopt;
}

std::string class_names(ClassSet s) {
  std::string out;
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if ((s & (ClassSet{1} << i)) == 0) continue;
    if (!out.empty()) out += ", ";
    out += kNames[i];
  }
  return out;
}

ClassSet write_classes() {
  ClassSet s = 0;
  for (C c : {C::Insert,      C::Update,        C::Delete,
              C::Merge,       C::CopyFrom,      C::CopyProgram,
              C::SelectInto,  C::Ddl,           C::Drop,
              C::Truncate,    C::Alter,         C::Grant,
              C::Rule,        C::Function,      C::DoBlock,
              C::DynamicSql,  C::RoleChange,    C::DangerousFunction,
              C::ServerFile,  C::WriteFunction, C::Call,
              C::Maintenance, C::Lock,          C::Listen,
              C::Utility,     C::Unparseable}) {
    s |= bit(c);
  }
  return s;
}

protocol::Result<std::shared_ptr<const Prefilter>> Prefilter::build(
    const std::vector<std::string>& dangerous_functions, const std::vector<std::string>& extra) {
  std::vector<std::string> literals(kKeywords.begin(), kKeywords.end());
  for (const auto& f : dangerous_functions) literals.push_back(ascii_lower(f));
  for (const FunctionClass& f : kFunctions) literals.emplace_back(f.name);
  for (const auto& x : extra) literals.push_back(ascii_lower(x));
  // Literals, escaped as regular expressions, plus DO as a whole word (as a substring it would
  // send half of all statements to the parser).
  std::vector<std::string> exprs;
  for (const auto& lit : literals) {
    std::string e;
    for (const char c : lit) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') e.push_back('\\');
      e.push_back(c);
    }
    exprs.push_back(std::move(e));
  }
  exprs.emplace_back("\\bdo\\b");
  std::vector<const char*> patterns;
  std::vector<unsigned> flags, ids;
  for (std::size_t i = 0; i < exprs.size(); ++i) {
    patterns.push_back(exprs[i].c_str());
    flags.push_back(HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH);
    ids.push_back(static_cast<unsigned>(i));
  }
  auto pf = std::shared_ptr<Prefilter>(new Prefilter());
  // A literal whose match could take in a byte of a number that starts a token (shape_of): one
  // that starts with a digit, '.', '+' or '-' (or is "e", or starts with "e" and a sign or digit:
  // an exponent), or has a digit or '.' right after a byte that cannot precede a number.
  auto ident = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$';
  };
  auto numeric = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '.'; };
  pf->numbers_unseen_ = std::none_of(literals.begin(), literals.end(), [&](const std::string& l) {
    if (l.empty()) return true;
    const char first = static_cast<char>(std::tolower(static_cast<unsigned char>(l[0])));
    if (numeric(first) || first == '+' || first == '-') return true;
    if (first == 'e' && (l.size() == 1 || numeric(l[1]) || l[1] == '+' || l[1] == '-')) return true;
    for (std::size_t i = 1; i < l.size(); ++i) {
      if (numeric(l[i]) && !ident(l[i - 1])) return true;
    }
    return false;
  });
  hs_compile_error_t* err = nullptr;
  if (hs_compile_multi(patterns.data(), flags.data(), ids.data(),
                       static_cast<unsigned>(patterns.size()), HS_MODE_BLOCK, nullptr, &pf->db_,
                       &err) != HS_SUCCESS) {
    std::string why = err != nullptr ? err->message : "unknown error";
    hs_free_compile_error(err);
    return protocol::Error{protocol::Errc::Rejected, "cannot compile the pre-filter: " + why};
  }
  return std::shared_ptr<const Prefilter>(std::move(pf));
}

Prefilter::~Prefilter() {
  hs_free_database(db_);
}

// Texts of one shape differ only in numbers that start a token. No literal can match a number's
// bytes (numbers_unseen_), so every literal match lies in the text around them, the same in
// each. Only \bdo\b looks past its match: at the byte before "do", which can be a number's
// last byte (a digit in one text, a '.' in another: "1do", "1.do").
bool Prefilter::same_for_shape(std::string_view shape) const noexcept {
  bool number_before_d = false;
  for (std::size_t i = shape.find('\x01'); i != std::string_view::npos && !number_before_d;
       i = shape.find('\x01', i + 1)) {
    number_before_d = i + 1 < shape.size() && (shape[i + 1] | 0x20) == 'd';
  }
  return same_for_numbers(number_before_d);
}

}  // namespace pgwarden::policy
