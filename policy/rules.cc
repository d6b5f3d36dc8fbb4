#include "policy/rules.h"

#include <hs/hs.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstring>
#include <functional>

#include "policy/policy_json.h"

namespace pgwarden::policy {

namespace {

namespace sj = simdjson;
namespace pr = pgwarden::protocol;

constexpr std::size_t kCacheSize = 1024;  // entries, direct-mapped by text hash
constexpr std::size_t kMaxCachedText = 4096;
// Shapes of plain reads (no pre-filter keyword), so that their texts are not scanned again.
constexpr std::size_t kPlainCacheSize = 512;
constexpr std::size_t kMaxPlainShape = 1024;

// Reviewed against PostgreSQL 15's catalog: every pg_catalog function not executable by PUBLIC
// (tests/integration/node/judgement.test.mjs checks that list against a live server), except
// those that only report (pg_config, pg_get_backend_memory_contexts, pg_get_shmem_allocations,
// pg_stat_have_stats, pg_replication_origin_oid, pg_replication_origin_progress,
// pg_replication_origin_session_is_setup, pg_replication_origin_session_progress,
// pg_show_replication_origin_status); plus functions open to PUBLIC that signal other sessions,
// change settings, create or drop replication slots, and those of contrib modules that write
// files (adminpack) or reach the network (dblink).
const std::vector<std::string> kDefaultDangerous = {
    // Signals and the server's own state.
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_log_backend_memory_contexts", "pg_promote", "pg_switch_wal", "pg_create_restore_point",
    "pg_backup_start", "pg_backup_stop", "pg_wal_replay_pause", "pg_wal_replay_resume",
    "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters", "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot", "pg_stat_reset_subscription_stats",
    // Settings.
    "set_config",
    // Files on the server: read, listed, written.
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir",
    "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_logicalsnapdir",
    "pg_ls_logicalmapdir", "pg_ls_replslotdir", "pg_current_logfile", "pg_hba_file_rules",
    "pg_ident_file_mappings", "pg_show_all_file_settings", "lo_import", "lo_export", "lo_unlink",
    "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_logdir_ls",
    // Replication: slots hold WAL back, origins steer logical replication, messages enter WAL.
    "pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
    "pg_drop_replication_slot", "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot", "pg_replication_slot_advance",
    "pg_replication_origin_create", "pg_replication_origin_drop", "pg_replication_origin_advance",
    "pg_replication_origin_session_setup", "pg_replication_origin_session_reset",
    "pg_replication_origin_xact_setup", "pg_replication_origin_xact_reset",
    "pg_logical_emit_message",
    // The network (dblink).
    "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_open",
    "dblink_send_query"};

std::atomic<std::uint64_t> next_policy_id{1};

}  // namespace

ClassSet Rule::denied() const {
  return (deny | (read_only ? write_classes() : 0)) & ~allow;
}

const Rule* Policy::match(const Who& who) const {
  if (who.actor.empty()) {
    for (const Rule& r : rules_) {
      if (!r.for_agents() && r.matches(who.identity, *who.groups)) return &r;
    }
    return nullptr;
  }
  const MayAct* m = may_act(who.actor, *who.groups);
  if (m == nullptr) return &no_agent_rule_;
  if (who.chain != nullptr) {
    for (const std::string& a : *who.chain) {
      if (may_act(a, *who.groups) == nullptr) return &no_agent_rule_;
    }
  }
  const Who agent{who.identity, who.groups, who.actor, &m->actor_groups};
  for (const Rule& r : rules_) {
    if (actor_audience_matches(r.users, r.groups, r.actors, r.actor_groups, agent)) return &r;
  }
  return &no_agent_rule_;
}

const MayAct* Policy::may_act(std::string_view actor,
                              const std::vector<std::string>& groups) const {
  for (const MayAct& m : may_act_) {
    if (m.actor == actor && audience_matches({}, m.for_groups, {}, groups)) return &m;
  }
  return nullptr;
}

pr::Error policy_error(const std::string& file, const std::string& path, const std::string& why) {
  return pr::Error{pr::Errc::Rejected, file + ": " + path + ": " + why};
}

bool json_strings(const sj::dom::element& e, std::vector<std::string>& out) {
  sj::dom::array arr;
  if (e.get_array().get(arr) != sj::SUCCESS) return false;
  for (sj::dom::element x : arr) {
    std::string_view s;
    if (x.get_string().get(s) != sj::SUCCESS) return false;
    out.emplace_back(s);
  }
  return true;
}

bool json_name(const sj::dom::element& e, std::string& out) {
  std::string_view s;
  if (e.get_string().get(s) != sj::SUCCESS || s.empty()) return false;
  out = s;
  return true;
}

const MaskProfile* Policy::mask_profile(const Who& who) const {
  if (!who.actor.empty()) {
    if (const MayAct* a = may_act(who.actor, *who.groups)) {
      const Who agent{who.identity, who.groups, who.actor, &a->actor_groups};
      for (const MaskProfile& m : masking_) {
        if (actor_audience_matches(m.users, m.groups, m.actors, m.actor_groups, agent)) return &m;
      }
    }
  }
  for (const MaskProfile& m : masking_) {
    if (!m.for_agents() && m.matches(who.identity, *who.groups)) return &m;
  }
  return nullptr;
}

namespace {

// "may_act": [{"actor": "agent-7", "for_groups": ["analysts"], "actor_groups": ["ai-agents"]}]
pr::Result<std::vector<MayAct>> parse_may_act(const sj::dom::element& e, const std::string& file) {
  std::vector<MayAct> out;
  sj::dom::array entries;
  if (e.get_array().get(entries) != sj::SUCCESS) {
    return policy_error(file, "$.may_act", "must be an array of {actor, for_groups, actor_groups}");
  }
  std::size_t i = 0;
  for (sj::dom::element me : entries) {
    const std::string at = "$.may_act[" + std::to_string(i++) + "]";
    sj::dom::object mo;
    if (me.get_object().get(mo) != sj::SUCCESS) return policy_error(file, at, "must be an object");
    MayAct m;
    for (auto f : mo) {
      const std::string k(f.key);
      if (k == "actor") {
        if (!json_name(f.value, m.actor)) {
          return policy_error(file, at + ".actor",
                              "must be a non-empty string (the act claim's sub)");
        }
      } else if (k == "for_groups" || k == "actor_groups") {
        if (!json_strings(f.value, k == "for_groups" ? m.for_groups : m.actor_groups)) {
          return policy_error(file, at + "." + k, "must be an array of group names");
        }
      } else if (k != "comment") {
        return policy_error(file, at + "." + k,
                            "unknown key (expected actor, for_groups, actor_groups, comment)");
      }
    }
    if (m.actor.empty()) return policy_error(file, at + ".actor", "every entry names its actor");
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

pr::Result<std::shared_ptr<const Policy>> Policy::parse(std::string_view json,
                                                        const std::string& file) {
  sj::dom::parser parser;
  sj::dom::element doc;
  if (const auto err = parser.parse(json.data(), json.size()).get(doc); err != sj::SUCCESS) {
    return policy_error(file, "$", std::string("not valid JSON (") + sj::error_message(err) + ")");
  }
  sj::dom::object top;
  if (doc.get_object().get(top) != sj::SUCCESS) return policy_error(file, "$", "must be an object");
  auto p = std::make_shared<Policy>();
  p->dangerous_ = kDefaultDangerous;
  std::vector<std::string> table_literals;
  for (auto field : top) {
    const std::string key(field.key);
    if (key == "role_mappings" || key == "comment") continue;  // role mappings: client_auth
    if (key == "dangerous_functions") {
      std::vector<std::string> names;
      if (!json_strings(field.value, names)) {
        return policy_error(file, "$.dangerous_functions", "must be an array of function names");
      }
      p->dangerous_.clear();
      for (const auto& n : names) p->dangerous_.push_back(ascii_lower(n));
      continue;
    }
    if (key == "admins") {
      if (!json_strings(field.value, p->admins_)) {
        return policy_error(file, "$.admins", "must be an array of group names");
      }
      continue;
    }
    if (key == "may_act") {
      auto m = parse_may_act(field.value, file);
      if (!m) return m.error();
      p->may_act_ = std::move(*m);
      continue;
    }
    if (key == "masking") {
      auto m = parse_masking(field.value, file);
      if (!m) return m.error();
      p->masking_ = std::move(*m);
      continue;
    }
    if (key != "rules") {
      return policy_error(
          file, "$." + key,
          "unknown key (expected role_mappings, rules, masking, may_act, dangerous_functions, "
          "admins, comment)");
    }
    sj::dom::array rules;
    if (field.value.get_array().get(rules) != sj::SUCCESS) {
      return policy_error(file, "$.rules", "must be an array of rules");
    }
    std::size_t i = 0;
    for (sj::dom::element re : rules) {
      const std::string at = "$.rules[" + std::to_string(i++) + "]";
      sj::dom::object ro;
      if (re.get_object().get(ro) != sj::SUCCESS)
        return policy_error(file, at, "must be an object");
      Rule r;
      for (auto rf : ro) {
        const std::string k(rf.key);
        const std::string path = at + "." + k;
        if (k == "name") {
          if (!json_name(rf.value, r.name)) {
            return policy_error(file, path, "must be a non-empty string");
          }
        } else if (k == "groups" || k == "users" || k == "denylist" || k == "forbidden_tables" ||
                   k == "approvers" || k == "actors" || k == "actor_groups") {
          std::vector<std::string>& dst = k == "groups"         ? r.groups
                                          : k == "users"        ? r.users
                                          : k == "denylist"     ? r.denylist
                                          : k == "approvers"    ? r.approvers
                                          : k == "actors"       ? r.actors
                                          : k == "actor_groups" ? r.actor_groups
                                                                : r.forbidden_tables;
          if (!json_strings(rf.value, dst))
            return policy_error(file, path, "must be an array of strings");
        } else if (k == "deny" || k == "require_approval" || k == "allow") {
          std::vector<std::string> names;
          if (!json_strings(rf.value, names)) {
            return policy_error(file, path, "must be an array of statement class names");
          }
          ClassSet& dst = k == "deny" ? r.deny : k == "allow" ? r.allow : r.approve;
          for (std::size_t n = 0; n < names.size(); ++n) {
            if (names[n] == "*") {
              dst |= (bit(StatementClass::kCount) - 1);
              continue;
            }
            const auto c = class_from_name(names[n]);
            if (!c) {
              return policy_error(file, path + "[" + std::to_string(n) + "]",
                                  "unknown statement class \"" + names[n] + "\" (known: " +
                                      class_names(bit(StatementClass::kCount) - 1) + ")");
            }
            dst |= bit(*c);
          }
        } else if (k == "read_only" || k == "replication") {
          if (rf.value.get_bool().get(k == "read_only" ? r.read_only : r.replication) !=
              sj::SUCCESS) {
            return policy_error(file, path, "must be true or false");
          }
        } else if (k == "approvals_required") {
          std::uint64_t n = 0;
          if (rf.value.get_uint64().get(n) != sj::SUCCESS || n < 1 || n > 5) {
            return policy_error(file, path, "must be a whole number from 1 to 5");
          }
          r.approvals_required = static_cast<unsigned>(n);
        } else if (k == "grant_seconds") {
          std::uint64_t n = 0;
          if (rf.value.get_uint64().get(n) != sj::SUCCESS || n < 1 || n > 7 * 86400) {
            return policy_error(file, path, "must be a whole number of seconds from 1 to 604800");
          }
          r.grant_seconds = static_cast<std::int64_t>(n);
        } else if (k != "comment") {
          return policy_error(file, path,
                              "unknown key (expected name, groups, users, actors, actor_groups, "
                              "deny, require_approval, "
                              "approvers, approvals_required, grant_seconds, allow, read_only, "
                              "replication, "
                              "denylist, forbidden_tables, comment)");
        }
      }
      if (r.name.empty()) return policy_error(file, at + ".name", "every rule needs a name");
      for (std::size_t t = 0; t < r.forbidden_tables.size(); ++t) {
        std::string& name = r.forbidden_tables[t];
        name = ascii_lower(name);
        const std::string rel = name.substr(name.rfind('.') + 1);
        if (name.empty() || (rel == "*" && name.find('.') == std::string::npos)) {
          return policy_error(file, at + ".forbidden_tables[" + std::to_string(t) + "]",
                              "expected table, schema.table or schema.*");
        }
        // Any statement naming the table (or schema) is parsed, whatever its keywords.
        table_literals.push_back(rel == "*" ? name.substr(0, name.size() - 2) : rel);
        table_literals.emplace_back("pg_stat");  // the statistics views (statistics_view)
        table_literals.emplace_back("search_path");
        table_literals.emplace_back("set_config");  // set_config(computed, ...)
      }
      if (!r.denylist.empty()) {
        std::vector<const char*> exprs;
        std::vector<unsigned> flags, ids;
        for (std::size_t n = 0; n < r.denylist.size(); ++n) {
          exprs.push_back(r.denylist[n].c_str());
          flags.push_back(HS_FLAG_DOTALL | HS_FLAG_SINGLEMATCH);
          ids.push_back(static_cast<unsigned>(n));
        }
        hs_database_t* db = nullptr;
        hs_compile_error_t* err = nullptr;
        if (hs_compile_multi(exprs.data(), flags.data(), ids.data(),
                             static_cast<unsigned>(exprs.size()), HS_MODE_BLOCK, nullptr, &db,
                             &err) != HS_SUCCESS) {
          const int bad = err != nullptr ? err->expression : -1;
          const std::string why = err != nullptr ? err->message : "cannot compile";
          hs_free_compile_error(err);
          return policy_error(file,
                              at + ".denylist" + (bad >= 0 ? "[" + std::to_string(bad) + "]" : ""),
                              "invalid regular expression: " + why);
        }
        r.denylist_db = std::shared_ptr<hs_database>(db, hs_free_database);
      }
      // Statements without any pre-filter keyword are taken as plain reads; a rule restricting
      // those classes must see every statement parsed.
      const ClassSet benign = bit(StatementClass::Select) | bit(StatementClass::Set) |
                              bit(StatementClass::Transaction) | bit(StatementClass::Cursor) |
                              bit(StatementClass::Prepare);
      r.parse_all = ((r.denied() | r.approve) & ~r.allow & benign) != 0;
      p->rules_.push_back(std::move(r));
    }
  }
  auto pf = Prefilter::build(p->dangerous_, table_literals);
  if (!pf) return policy_error(file, "$", pf.error().message);
  p->prefilter_ = *pf;
  p->no_agent_rule_.name = "(no rule for this agent)";
  p->no_agent_rule_.deny = bit(StatementClass::kCount) - 1;
  p->no_agent_rule_.parse_all = true;
  p->id_ = next_policy_id.fetch_add(1);
  return std::shared_ptr<const Policy>(std::move(p));
}

std::string Policy::forbidden_schema_in(std::string_view search_path, const Rule* only) const {
  for (const std::string& schema : split_search_path(search_path)) {
    for (const Rule& r : rules_) {
      if (only != nullptr && &r != only) continue;
      for (const std::string& f : r.forbidden_tables) {
        if (f == schema + ".*") return schema;
      }
    }
  }
  return {};
}

std::string refusal_message(const Decision& d) {
  const std::string rule = d.rule != nullptr ? d.rule->name : "?";
  if (d.action == Action::Hold) {
    return "pgwarden: statement requires approval under policy rule \"" + rule + "\" (" + d.reason +
           "), but approvals need the admin endpoint (--admin-listen), so it was not run";
  }
  return "pgwarden: statement denied by policy rule \"" + rule + "\" (" + d.reason + ")";
}

struct PolicyEngine::Entry {
  std::uint64_t policy = 0;
  const Rule* rule = nullptr;
  std::string text;
  Decision decision;
  std::size_t hash = 0;   // text_hash(text): most misses end here, without comparing texts
  bool pii_free = false;  // of an entry keyed by shape: shape_free_of_builtin_pii(text)
};

PolicyEngine::PolicyEngine()
    : cache_(std::make_unique<Entry[]>(kCacheSize)),
      shape_cache_(std::make_unique<Entry[]>(kCacheSize)),
      plain_cache_(std::make_unique<Entry[]>(kPlainCacheSize)) {}

PolicyEngine::~PolicyEngine() {
  hs_free_scratch(scratch_);
}

namespace {

int on_denylist(unsigned int id, unsigned long long, unsigned long long, unsigned int, void* ctx) {
  *static_cast<int*>(ctx) = static_cast<int>(id);
  return 1;
}

bool statistics_view(const std::string& table) {
  const std::size_t dot = table.find('.');
  if (dot != std::string::npos && table.compare(0, dot, "pg_catalog") != 0) return false;
  const std::string_view rel =
      dot == std::string::npos ? std::string_view(table) : std::string_view(table).substr(dot + 1);
  return rel == "pg_stats" || rel == "pg_stats_ext" || rel == "pg_stats_ext_exprs" ||
         rel == "pg_statistic" || rel == "pg_statistic_ext_data";
}

bool table_forbidden(const std::string& table, const std::string& entry) {
  const std::size_t dot = table.find('.');
  const std::string_view schema =
      dot == std::string::npos ? std::string_view() : std::string_view(table).substr(0, dot);
  const std::string_view rel =
      dot == std::string::npos ? std::string_view(table) : std::string_view(table).substr(dot + 1);
  const std::size_t edot = entry.find('.');
  // "schema.*": a whole schema (renamed), which may hold any table.
  if (rel == "*") return edot == std::string::npos || entry.compare(0, edot, schema) == 0;
  if (edot == std::string::npos) return rel == entry;  // "secrets": in any schema
  const std::string_view eschema = std::string_view(entry).substr(0, edot);
  const std::string_view erel = std::string_view(entry).substr(edot + 1);
  if (erel == "*") return schema == eschema;
  // "public.secrets" also matches an unqualified "secrets" (it may resolve there).
  return rel == erel && (schema.empty() || schema == eschema);
}

}  // namespace

bool PolicyEngine::denylisted(const Rule& rule, std::string_view sql, Decision& d) {
  if (!rule.denylist_db) return false;
  d.rule = &rule;
  d.action = Action::Deny;
  if (scratch_ == nullptr) {
    d.reason = "denylist could not be checked";
    return true;
  }
  int hit = -1;
  hs_scan(rule.denylist_db.get(), sql.data(), static_cast<unsigned>(sql.size()), 0, scratch_,
          on_denylist, &hit);
  if (hit < 0) return false;
  d.reason = "denylist pattern /" + rule.denylist[static_cast<std::size_t>(hit)] + "/";
  return true;
}

Decision PolicyEngine::decide(const Rule& rule, const Analysis& a) {
  Decision d;
  d.rule = &rule;
  d.classes = a.classes;
  if (a.unanalysable) {
    // What pgwarden's own limits keep it from judging is refused, whatever the rule allows.
    d.action = Action::Deny;
    d.reason = "pgwarden cannot analyse this statement: " + a.why_unanalysable;
    return d;
  }
  const ClassSet denied = a.classes & rule.denied();
  if (denied != 0) {
    d.action = Action::Deny;
    for (unsigned c = 0; c < static_cast<unsigned>(StatementClass::kCount); ++c) {
      if ((denied & (ClassSet{1} << c)) != 0) {
        d.reason = std::string("class ") + class_name(static_cast<StatementClass>(c));
        const auto cls = static_cast<StatementClass>(c);
        if (cls == StatementClass::DangerousFunction) {
          d.reason += " " + a.dangerous_function + "()";
        } else if (const std::string f = a.function_of(cls); !f.empty()) {
          d.reason += " " + f + "()";
        } else if (!a.scope_hint.empty() && (cls == StatementClass::TautologicalWhere ||
                                             cls == StatementClass::UpdateWithoutWhere ||
                                             cls == StatementClass::DeleteWithoutWhere)) {
          d.reason += ": " + a.scope_hint;
        }
        break;
      }
    }
    return d;
  }
  // What a function reads by a name in a string, or dynamic SQL runs, no table list can check.
  constexpr ClassSet kUnseenTables =
      bit(StatementClass::QueryInString) | bit(StatementClass::DynamicSql);
  if (!rule.forbidden_tables.empty() && (a.classes & kUnseenTables & ~rule.allow) != 0) {
    d.action = Action::Deny;
    const bool named = (a.classes & bit(StatementClass::QueryInString)) != 0;
    d.reason =
        (named ? "class query_in_string " + a.function_of(StatementClass::QueryInString) + "()"
               : std::string("class dynamic_sql")) +
        ": it may read tables by names the rule's forbidden_tables cannot check";
    return d;
  }
  for (const std::string& t : a.tables) {
    for (const std::string& f : rule.forbidden_tables) {
      if (table_forbidden(t, f)) {
        d.action = Action::Deny;
        d.reason = "table " + t;
        return d;
      }
    }
    // The planner's statistics hold sample values of every table's columns.
    if (!rule.forbidden_tables.empty() && statistics_view(t)) {
      d.action = Action::Deny;
      d.reason = "table " + t + ": it shows sample values of the forbidden tables";
      return d;
    }
  }
  // An unqualified name resolves through the search_path: one that reaches a forbidden schema
  // ("schema.*") would make every unqualified name a possible reference. ("schema.table"
  // entries match unqualified names whatever the path.)
  const bool whole_schema = std::any_of(
      rule.forbidden_tables.begin(), rule.forbidden_tables.end(),
      [](const std::string& f) { return f.size() > 2 && f.compare(f.size() - 2, 2, ".*") == 0; });
  // pg_settings written, or named by DDL (a view over it is written through later, a rule or
  // routine writes it later).
  const bool settings_written =
      (a.classes & (bit(StatementClass::Update) | bit(StatementClass::Insert) |
                    bit(StatementClass::Merge) | bit(StatementClass::Ddl))) != 0 &&
      (std::find(a.tables.begin(), a.tables.end(), "pg_settings") != a.tables.end() ||
       std::find(a.tables.begin(), a.tables.end(), "pg_catalog.pg_settings") != a.tables.end());
  if (whole_schema && (settings_written || std::find(a.search_path.begin(), a.search_path.end(),
                                                     std::string()) != a.search_path.end())) {
    d.action = Action::Deny;
    d.reason =
        "search_path set to a value pgwarden cannot read (set_config with a computed "
        "argument, or pg_settings): it may reach forbidden tables";
    return d;
  }
  for (const std::string& schema : a.search_path) {
    for (const std::string& f : rule.forbidden_tables) {
      if (f.size() == schema.size() + 2 && f.compare(0, schema.size(), schema) == 0 &&
          f.compare(schema.size(), 2, ".*") == 0) {
        d.action = Action::Deny;
        d.reason = "search_path " + schema + ": it holds forbidden tables";
        return d;
      }
    }
  }
  const ClassSet held = a.classes & rule.approve & ~rule.allow;
  if (held != 0) {
    d.action = Action::Hold;
    d.reason = "class " + class_names(held);
  }
  return d;
}

void PolicyEngine::adopt(const Policy& policy) {
  if (policy.id() == policy_id_) return;
  // A new policy: scratch space for its Hyperscan databases, once.
  classifier_.forget_prefilter();
  for (const Rule& r : policy.rules()) {
    if (r.denylist_db && hs_alloc_scratch(r.denylist_db.get(), &scratch_) != HS_SUCCESS) {
      hs_free_scratch(scratch_);
      scratch_ = nullptr;
      break;
    }
  }
  policy_id_ = policy.id();
}

ClassSet PolicyEngine::classes_of(const Policy& policy, std::string_view sql, bool always_parse) {
  adopt(policy);
  if (!always_parse && !classifier_.needs_parse(sql, policy.prefilter())) {
    return Classifier::plain_read().classes;
  }
  // Parsed texts are cached by exact text (entries without a rule: judge() never matches them).
  const std::size_t hash = text_hash(sql);
  Entry& e = cache_[hash % kCacheSize];
  if (e.hash == hash && e.policy == policy.id() && e.rule == nullptr && e.text == sql) {
    ++hits_;
    return e.decision.classes;
  }
  const Analysis a = classifier_.analyze_parsed(sql, policy.dangerous_functions());
  const ClassSet classes = a.classes | (a.statements > 1 ? kMultiStatement : 0);
  if (sql.size() <= kMaxCachedText) {
    e.policy = policy.id();
    e.rule = nullptr;
    e.text.assign(sql);
    e.hash = hash;
    e.decision = Decision{};
    e.decision.classes = classes;
  }
  return classes;
}

Decision PolicyEngine::judge(const Policy& policy, const Rule* rule, std::string_view sql) {
  ++serial_;
  shaped_ = false;  // (until this text's shape is known)
  if (rule == nullptr) return Decision{};
  adopt(policy);
  // The denylist looks at every byte, numbers included: on the text itself, never cached.
  Decision listed;
  if (denylisted(*rule, sql, listed)) return listed;
  const bool cacheable = sql.size() <= kMaxCachedText;
  // Texts that differ only in numbers (the simple protocol's literals) share a decision, unless
  // the analysis looked at a number's value. The shape is looked up first: a text with numbers is
  // seldom seen twice, and its shape's entry holds what its own would.
  bool number_before_d = false, signed_exponent = false;
  std::size_t digits = 0;
  const bool shaped =
      cacheable && shape_of(sql, shape_, &number_before_d, &digits, &signed_exponent);
  shaped_ = shaped;
  numbers_pii_free_ = digits < 9 && !signed_exponent;
  shape_pii_free_ = false;  // known below, from a cache entry of the shape or from the shape
  const std::size_t shape_hash = shaped ? text_hash(shape_) : 0;
  shape_hash_ = shape_hash;
  Entry* by_shape = shaped ? &shape_cache_[shape_hash % kCacheSize] : nullptr;
  auto known = [&](const Entry* e) {
    return e != nullptr && e->hash == shape_hash && e->policy == policy.id() && e->rule == rule &&
           e->text == shape_;
  };
  // Where the pre-filter answers alike for every text of the shape, what a text of it was found
  // to be (a plain read, or parsed) holds for this one without scanning it.
  const bool settled = shaped && policy.prefilter().same_for_numbers(number_before_d);
  Entry* plain = settled && !rule->parse_all && shape_.size() <= kMaxPlainShape
                     ? &plain_cache_[shape_hash % kPlainCacheSize]
                     : nullptr;
  if (known(plain)) {
    ++hits_;
    shape_pii_free_ = plain->pii_free;
    return plain->decision;
  }
  if (settled && known(by_shape)) {
    ++hits_;
    shape_pii_free_ = by_shape->pii_free;
    return by_shape->decision;
  }
  // A text without numbers is its own shape, and has its hash.
  const bool own_shape = shaped && shape_.size() == sql.size() &&
                         std::memchr(shape_.data(), '\x01', shape_.size()) == nullptr;
  const std::size_t sql_hash = own_shape ? shape_hash : text_hash(sql);
  Entry& exact = cache_[sql_hash % kCacheSize];
  if (exact.hash == sql_hash && exact.policy == policy.id() && exact.rule == rule &&
      exact.text == sql) {
    ++hits_;
    return exact.decision;
  }
  if (shaped) shape_pii_free_ = shape_free_of_builtin_pii(shape_);
  // A plain read (no pre-filter keyword) needs no parser.
  if (!rule->parse_all && !classifier_.needs_parse(sql, policy.prefilter())) {
    Decision d = decide(*rule, Classifier::plain_read());
    if (plain != nullptr) {
      plain->policy = policy.id();
      plain->rule = rule;
      plain->text.assign(shape_);
      plain->hash = shape_hash;
      plain->decision = d;
      plain->pii_free = shape_pii_free_;
    }
    return d;
  }
  if (!settled && known(by_shape)) {
    ++hits_;
    return by_shape->decision;
  }
  const Analysis a = classifier_.analyze_parsed(sql, policy.dangerous_functions());
  Decision d = decide(*rule, a);
  auto store = [&](Entry& e, std::string_view key, std::size_t hash, bool pii_free) {
    e.policy = policy.id();
    e.rule = rule;
    e.text.assign(key);
    e.hash = hash;
    e.decision = d;
    e.pii_free = pii_free;
  };
  // The same text again: no pre-filter, no shape.
  if (cacheable) store(exact, sql, sql_hash, false);
  if (by_shape != nullptr && !a.literal_sensitive) {
    store(*by_shape, shape_, shape_hash, shape_pii_free_);
  }
  return d;
}

}  // namespace pgwarden::policy
