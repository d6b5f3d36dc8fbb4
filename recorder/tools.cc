#include "recorder/tools.h"

#include <algorithm>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>

#include "protocol/json.h"
#include "recorder/reader.h"

namespace pgwarden::recorder {

namespace {

struct ToolArgs {
  std::vector<std::string> dirs;       // one per gateway instance, read together
  std::string instance;                // replay: the directory whose session is meant
  std::vector<std::string> key_files;  // verify: one for all directories, or one per directory
  std::string user;
  std::string table;
  std::string session;
  std::string format = "text";
  std::int64_t since_us = 0;
  std::int64_t until_us = 0;  // 0 = none
  bool follow = false;
  double speed = 0;  // replay: 0 = no pauses
};

// "2026-11-21T14:50:00Z", "2026-11-21 14:50:00.5", "2026-11-21" (UTC) or seconds since the epoch.
std::int64_t parse_time(const std::string& flag, const std::string& v) {
  if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos) {
    return std::stoll(v) * 1'000'000;
  }
  std::tm tm{};
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  double sec = 0;
  char tail[8] = {0};
  const int n =
      std::sscanf(v.c_str(), "%4d-%2d-%2d%*1[T ]%2d:%2d:%lf%7s", &y, &mo, &d, &h, &mi, &sec, tail);
  const bool date_only = n == 3 && v.size() == 10;
  if (!(date_only || n == 6 || (n == 7 && std::string(tail) == "Z"))) {
    throw std::runtime_error(flag + ": expected a UTC time like 2026-11-21T14:50:00Z, got: " + v);
  }
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  const auto whole = static_cast<std::int64_t>(timegm(&tm));
  return whole * 1'000'000 + static_cast<std::int64_t>(sec * 1e6);
}

std::string format_time(std::int64_t us, bool iso) {
  const std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, iso ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof out, "%s.%06lld%s", buf, static_cast<long long>(us % 1'000'000),
                iso ? "Z" : " UTC");
  return out;
}

std::string session_id(std::uint64_t s) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(s));
  return buf;
}

bool numeric_field(Field f) {
  return f == Field::DurationUs || f == Field::Rows || f == Field::Statement || f == Field::Bytes ||
         f == Field::Core || f == Field::Segment || f == Field::Records || f == Field::Executed;
}

// One event as a JSON object (the export schema, recorder/FORMAT.md).
std::string to_json(const SegmentFile& seg, const Record& r) {
  std::string out = "{\"ts\":";
  protocol::append_json_string(out, format_time(r.ts_us, true));
  out += ",\"type\":";
  protocol::append_json_string(out, type_name(r.type));
  out += ",\"session\":";
  protocol::append_json_string(out, session_id(r.session));
  out += ",\"core\":" + std::to_string(seg.core);
  if (!seg.instance.empty()) {
    out += ",\"instance\":";
    protocol::append_json_string(out, seg.instance);
  }
  // Repeated fields become arrays; a NULL parameter is JSON null, in its place. A clipped value's
  // hash (text_sha256, right after it) is named for it: `text_sha256`, `statement_sha256`,
  // `portal_sha256`...; for a parameter or column, in `params_sha256` or `values_sha256`, an
  // array in step with the values (null where a value was whole).
  std::map<std::string, std::vector<std::optional<std::string_view>>> lists;
  Field prev = Field::Version;
  for (const auto& [f, v] : r.fields) {
    const Field before = prev;
    prev = f;
    if (f == Field::TextSha256 && before != Field::Text) {
      const bool listed = before == Field::Param || before == Field::Value;
      const std::string key = std::string(field_name(before)) + "_sha256";
      if (listed) {
        auto& hashes = lists[key];
        hashes.resize(lists[field_name(before)].size());
        hashes.back() = v;
      } else {
        out += ",\"" + key + "\":";
        protocol::append_json_string(out, v);
      }
      continue;
    }
    if (f == Field::Param || f == Field::Groups || f == Field::Value || f == Field::Actor) {
      lists[field_name(f)].emplace_back(v);
      continue;
    }
    if (f == Field::ParamNull || f == Field::ValueNull) {
      lists[field_name(f)].emplace_back(std::nullopt);
      continue;
    }
    if (f == Field::PrevHash || f == Field::Mac) continue;
    out += ",\"";
    out += field_name(f);
    out += "\":";
    if (numeric_field(f) && !v.empty() && v.find_first_not_of("0123456789") == std::string::npos) {
      out.append(v);
    } else {
      protocol::append_json_string(out, v);
    }
  }
  for (const char* base : {"params", "values"}) {
    const auto h = lists.find(std::string(base) + "_sha256");
    if (h != lists.end()) h->second.resize(lists[base].size());
  }
  for (const auto& [name, values] : lists) {
    out += ",\"";
    out += name;
    out += "\":[";
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i != 0) out.push_back(',');
      if (values[i]) {
        protocol::append_json_string(out, *values[i]);
      } else {
        out += "null";
      }
    }
    out.push_back(']');
  }
  out.push_back('}');
  return out;
}

bool is_event(const Record& r) {
  return r.type != RecordType::SegmentStart && r.type != RecordType::Seal &&
         r.type != RecordType::Chain;
}

// Reads records as they are appended: remembers how far each segment file was read.
class Follower {
 public:
  explicit Follower(std::string dir) : dir_(std::move(dir)) {}
  template <class F>
  void poll(F&& fn) {
    for (const auto& seg : list_segments(dir_)) {
      std::uint64_t& done = offsets_[seg.path];
      std::ifstream in(seg.path, std::ios::binary);
      in.seekg(static_cast<std::streamoff>(done));
      const std::string data((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
      std::size_t consumed = 0;
      for_each_in(
          data,
          [&](const Record& r, std::string_view) {
            each_event(r, [&](const Record& e) { fn(seg, e); });
          },
          consumed);
      done += consumed;
    }
  }

 private:
  std::string dir_;
  std::map<std::string, std::uint64_t> offsets_;
};

std::string read_key(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file);
  std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  return key;
}

int cmd_verify(const ToolArgs& a) {
  if (a.key_files.empty()) throw std::runtime_error("verify needs --key-file");
  if (a.key_files.size() != 1 && a.key_files.size() != a.dirs.size()) {
    throw std::runtime_error(
        "verify takes one --key-file for every --record-dir, or one per --record-dir (in order)");
  }
  // Each instance's directory is its own chain: verified one by one, every one must pass.
  int failed = 0;
  for (std::size_t i = 0; i < a.dirs.size(); ++i) {
    const std::string& dir = a.dirs[i];
    const std::string key = read_key(a.key_files[a.key_files.size() == 1 ? 0 : i]);
    const std::string who = a.dirs.size() > 1 ? dir + ": " : "";
    const VerifyReport r = verify_dir(dir, key);
    for (const auto& n : r.notes) std::cout << who << "note: " << n << "\n";
    if (!r.ok) {
      std::cout << who << "FAILED: " << r.problem << "\n";
      failed = 1;
      continue;
    }
    std::cout << who << "intact: " << r.segments << " segments, " << r.records
              << " records; CRCs, hash chain and seals verified\n";
  }
  return failed;
}

int cmd_export(const ToolArgs& a) {
  if (a.format != "jsonl") throw std::runtime_error("export: only --format jsonl is supported");
  auto emit = [&](const SegmentFile& seg, const Record& r) {
    if (!is_event(r) || r.ts_us < a.since_us) return;
    if (a.until_us != 0 && r.ts_us > a.until_us) return;
    std::cout << to_json(seg, r) << "\n";
  };
  if (!a.follow) {
    const std::string problem = for_each_record(a.dirs, emit);
    if (!problem.empty()) std::cerr << "pgwarden export: stopped reading " << problem << "\n";
    return problem.empty() ? 0 : 1;
  }
  Follower f(a.dirs.front());
  while (true) {
    f.poll(emit);
    std::cout.flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

struct SessionSummary {
  std::string instance;
  std::uint64_t id = 0;
  unsigned core = 0;
  std::int64_t start_us = 0, end_us = 0;
  std::string identity, client, database, role, app, end_reason;
  std::uint64_t statements = 0, errors = 0, refused = 0;
  bool table_hit = false;
};

bool mentions_table(std::string_view text, const std::string& table) {
  auto lower = [](char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); };
  auto ident = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || static_cast<unsigned char>(c) >= 0x80;
  };
  for (std::size_t i = 0; i + table.size() <= text.size(); ++i) {
    std::size_t k = 0;
    while (k < table.size() && lower(text[i + k]) == lower(table[k])) ++k;
    if (k != table.size()) continue;
    const bool left = i == 0 || !ident(text[i - 1]);
    const bool right = i + k == text.size() || !ident(text[i + k]);
    if (left && right) return true;
  }
  return false;
}

int cmd_sessions(const ToolArgs& a) {
  // Keyed by instance too: two gateways could (rarely) draw the same session id.
  using Key = std::pair<std::string, std::uint64_t>;
  std::map<Key, SessionSummary> sessions;
  std::vector<Key> order;
  const std::string problem = for_each_record(a.dirs, [&](const SegmentFile& seg, const Record& r) {
    if (!is_event(r) || r.type == RecordType::Admin) return;  // admin actions: export shows them
    const Key key{seg.instance, r.session};
    auto [it, added] = sessions.try_emplace(key);
    SessionSummary& s = it->second;
    if (added) {
      s.instance = seg.instance;
      s.id = r.session;
      s.core = seg.core;
      s.start_us = r.ts_us;
      order.push_back(key);
    }
    s.end_us = r.ts_us;
    switch (r.type) {
      case RecordType::SessionStart:
        s.identity = r.get(Field::Identity);
        if (!r.get(Field::Actor).empty()) s.identity += " via " + std::string(r.get(Field::Actor));
        s.client = r.get(Field::Client);
        s.database = r.get(Field::Database);
        s.role = r.get(Field::Role);
        s.app = r.get(Field::Application);
        break;
      case RecordType::Query:
      case RecordType::Parse:
        ++s.statements;
        if (!a.table.empty() && mentions_table(r.get(Field::Text), a.table)) s.table_hit = true;
        break;
      case RecordType::Outcome:
        if (!r.get(Field::Sqlstate).empty()) ++s.errors;
        break;
      case RecordType::Refused:
        ++s.refused;
        if (!a.table.empty() && mentions_table(r.get(Field::Text), a.table)) s.table_hit = true;
        break;
      case RecordType::SessionEnd:
        s.end_reason = r.get(Field::Reason);
        break;
      default:
        break;
    }
  });
  std::printf("%-16s  %-30s  %-30s  %-24s  %-21s  %-12s  %-12s  %5s  %4s  %s\n", "SESSION",
              "STARTED (UTC)", "ENDED", "IDENTITY", "CLIENT", "DATABASE", "ROLE", "STMTS", "ERRS",
              a.dirs.size() > 1 ? "END  (INSTANCE)" : "END");
  for (const Key& key : order) {
    const SessionSummary& s = sessions[key];
    if (!a.user.empty() && s.identity != a.user) continue;
    if (s.start_us < a.since_us) continue;
    if (a.until_us != 0 && s.start_us > a.until_us) continue;
    if (!a.table.empty() && !s.table_hit) continue;
    std::printf("%-16s  %-30s  %-30s  %-24s  %-21s  %-12s  %-12s  %5llu  %4llu  %s%s%s%s\n",
                session_id(s.id).c_str(), format_time(s.start_us, false).c_str(),
                s.end_reason.empty() ? "-" : format_time(s.end_us, false).c_str(),
                s.identity.c_str(), s.client.c_str(), s.database.c_str(), s.role.c_str(),
                static_cast<unsigned long long>(s.statements),
                static_cast<unsigned long long>(s.errors + s.refused),
                s.end_reason.empty() ? "(open)" : s.end_reason.c_str(),
                s.instance.empty() ? "" : "  (", s.instance.c_str(), s.instance.empty() ? "" : ")");
  }
  if (!problem.empty()) std::cerr << "pgwarden sessions: stopped reading " << problem << "\n";
  return problem.empty() ? 0 : 1;
}

// A recorded value for a terminal: control characters (escape sequences that could rewrite what
// is on screen, carriage returns, newlines) become \xHH, so that no value can print a line that
// looks like a record of its own. Statement texts keep their lines and tabs: each line after the
// first is indented behind "  | ", where no record starts.
std::string for_terminal(std::string_view v, bool lines = false) {
  std::string out;
  out.reserve(v.size());
  for (const char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (lines && c == '\n') {
      out += "\n  | ";
    } else if ((c < 0x20 && !(lines && c == '\t')) || c == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    } else {
      out += ch;
    }
  }
  return out;
}

// A bind's parameters (a fast-path call's arguments), quoted, NULL as NULL.
std::string params_of(const Record& r) {
  std::string params;
  for (const auto& [k, v] : r.fields) {
    if (k == Field::Param) params += (params.empty() ? "'" : ", '") + for_terminal(v) + "'";
    if (k == Field::ParamNull) params += params.empty() ? "NULL" : ", NULL";
  }
  return params;
}

std::string describe(const Record& r) {
  auto f = [&](Field k) { return for_terminal(r.get(k), k == Field::Text); };
  switch (r.type) {
    case RecordType::SessionStart: {
      std::string groups, actors;
      for (const auto& [k, v] : r.fields) {
        if (k == Field::Groups) groups += (groups.empty() ? "" : ",") + for_terminal(v);
        if (k == Field::Actor) actors += (actors.empty() ? "" : " for ") + for_terminal(v);
      }
      return "SESSION START identity=" + f(Field::Identity) +
             (actors.empty() ? "" : " acted for by " + actors) +
             (f(Field::ClientId).empty() ? "" : " client_id=" + f(Field::ClientId)) +
             " groups=" + groups + " auth=" + f(Field::Method) + " client=" + f(Field::Client) +
             " database=" + f(Field::Database) + " role=" + f(Field::Role) +
             " application_name=" + f(Field::Application) + " tls=" + f(Field::Tls);
    }
    case RecordType::Query:
    case RecordType::Parse: {
      // An MCP tool call shows as the call, then its statement.
      std::string call;
      if (!f(Field::Tool).empty()) {
        call = "TOOL     " + f(Field::Tool) + " (MCP session " + f(Field::McpSession) + ", call #" +
               f(Field::McpCall) + ", id " + f(Field::JsonRpcId) +
               (f(Field::McpClient).empty() ? "" : ", client " + f(Field::McpClient)) + ")" +
               (f(Field::Arguments).empty() ? "" : " " + f(Field::Arguments)) + "\n  ";
      }
      if (!f(Field::Intent).empty()) call += "INTENT   " + f(Field::Intent) + "\n  ";
      // (A fast-path function call is a query record with its arguments as params.)
      const std::string params = params_of(r);
      return call +
             (r.type == RecordType::Query
                  ? "QUERY    " + f(Field::Text) + (params.empty() ? "" : " args=(" + params + ")")
                  : "PARSE    [" + f(Field::Name) + "] " + f(Field::Text));
    }
    case RecordType::Bind:
      return "BIND     portal=[" + f(Field::Portal) + "] statement=[" + f(Field::Name) +
             "] params=(" + params_of(r) + ")";
    case RecordType::Execute:
      return "EXECUTE  portal=[" + f(Field::Portal) + "]";
    case RecordType::Row: {
      std::string values;
      for (const auto& [k, v] : r.fields) {
        if (k == Field::Value) values += (values.empty() ? "" : " | ") + for_terminal(v);
        if (k == Field::ValueNull) values += values.empty() ? "NULL" : " | NULL";
      }
      return "  row: " + values;
    }
    case RecordType::Outcome:
      if (!f(Field::Sqlstate).empty()) {
        return "  -> ERROR " + f(Field::Sqlstate) + ": " + f(Field::Message) + " (" +
               f(Field::DurationUs) + " us)";
      }
      return "  -> " + f(Field::Tag) + " (" + f(Field::Rows) + " rows, " + f(Field::DurationUs) +
             " us" +
             (f(Field::Direction).empty()
                  ? std::string()
                  : ", COPY " + f(Field::Direction) + " " + f(Field::Bytes) + " bytes") +
             ")";
    case RecordType::Refused:
      return "REFUSED  " + f(Field::Text) + "  -- " + f(Field::Sqlstate) + ": " + f(Field::Reason);
    case RecordType::SessionEnd:
      return "SESSION END: " + f(Field::Reason);
    case RecordType::Approval:
      return "  APPROVAL " + f(Field::Decision) + ": " + f(Field::Reason) + " after " +
             f(Field::DurationUs) + " us";
    case RecordType::Token:
      return "TOKEN    " + f(Field::Reason);
    case RecordType::Admin:
      return "ADMIN " + f(Field::Identity) + " from " + f(Field::Client) + ": " + f(Field::Text) +
             " " + f(Field::Target) + " -> " + f(Field::Decision) +
             (f(Field::Reason).empty() ? "" : " (" + f(Field::Reason) + ")");
    default:
      return type_name(r.type);
  }
}

int cmd_replay(const ToolArgs& a) {
  if (a.session.empty()) throw std::runtime_error("replay needs --session ID");
  std::uint64_t id = 0;
  try {
    id = std::stoull(a.session, nullptr, 16);
  } catch (const std::exception&) {
    throw std::runtime_error("--session: expected a session id as printed by `sessions`");
  }
  bool found = false;
  std::int64_t first = 0, prev = 0;
  bool ended = false;
  // Two instances could (rarely) have drawn the same id: one session is shown, never a mix.
  std::string instance;
  std::string other;
  auto show = [&](const SegmentFile& seg, const Record& r) {
    if (r.session != id || !is_event(r)) return;
    if (!a.instance.empty() && !seg.instance.empty() && seg.instance != a.instance) return;
    if (!found) {
      first = prev = r.ts_us;
      instance = seg.instance;
    } else if (seg.instance != instance) {
      other = seg.instance;
      return;
    }
    found = true;
    if (a.speed > 0 && r.ts_us > prev) {
      std::this_thread::sleep_for(
          std::chrono::microseconds(static_cast<std::int64_t>((r.ts_us - prev) / a.speed)));
    }
    prev = r.ts_us;
    if (a.format == "jsonl") {
      std::cout << to_json(seg, r) << "\n";
    } else {
      char offset[32];
      std::snprintf(offset, sizeof offset, "+%.6fs", static_cast<double>(r.ts_us - first) / 1e6);
      std::cout << format_time(r.ts_us, false) << " " << offset << "  " << describe(r) << "\n";
    }
    std::cout.flush();
    if (r.type == RecordType::SessionEnd) ended = true;
  };
  if (a.format != "text" && a.format != "jsonl") {
    throw std::runtime_error("--format: expected text or jsonl");
  }
  if (!a.follow) {
    const std::string problem = for_each_record(a.dirs, show);
    if (!problem.empty()) std::cerr << "pgwarden replay: stopped reading " << problem << "\n";
    if (!found) {
      std::cerr << "pgwarden replay: no session " << a.session << " in the record directories\n";
      return 1;
    }
    if (!other.empty()) {
      std::cerr << "pgwarden replay: session " << a.session << " is in " << instance << " and in "
                << other << " (shown: " << instance << "); name one with --instance DIR\n";
      return 1;
    }
    return problem.empty() ? 0 : 1;
  }
  Follower f(a.dirs.front());
  while (!ended) {
    f.poll(show);
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return 0;
}

const char* kUsage = R"(pgwarden tools read record directories without a running gateway:
  pgwarden sessions --record-dir D [--user U] [--since T] [--until T] [--table NAME]
  pgwarden replay   --record-dir D --session ID [--instance D] [--follow] [--speed X]
                    [--format text|jsonl]
  pgwarden verify   --record-dir D --key-file K
  pgwarden export   --record-dir D --format jsonl [--since T] [--until T] [--follow]
--record-dir is repeatable: several gateways' directories are read together, ordered by time
(each record names its instance; verify checks each directory's chain, with one --key-file for
all or one per directory; --follow takes one).
Times are UTC: 2026-11-21T14:50:00Z, 2026-11-21 14:50:00, 2026-11-21, or epoch seconds.
)";

}  // namespace

bool run_tool(const std::vector<std::string>& args, int& exit_code) {
  if (args.empty()) return false;
  const std::string& cmd = args[0];
  if (cmd != "sessions" && cmd != "replay" && cmd != "verify" && cmd != "export") return false;
  ToolArgs a;
  try {
    for (std::size_t i = 1; i < args.size(); ++i) {
      const std::string& name = args[i];
      if (name == "--follow") {
        a.follow = true;
        continue;
      }
      if (name == "--help" || name == "-h") {
        std::cout << kUsage;
        exit_code = 0;
        return true;
      }
      if (i + 1 >= args.size()) throw std::runtime_error(name + " needs a value");
      const std::string& v = args[++i];
      if (name == "--record-dir") {
        a.dirs.push_back(v);
      } else if (name == "--instance") {
        a.instance = v;
      } else if (name == "--key-file") {
        a.key_files.push_back(v);
      } else if (name == "--user") {
        a.user = v;
      } else if (name == "--table") {
        a.table = v;
      } else if (name == "--session") {
        a.session = v;
      } else if (name == "--format") {
        a.format = v;
      } else if (name == "--since") {
        a.since_us = parse_time(name, v);
      } else if (name == "--until") {
        a.until_us = parse_time(name, v);
      } else if (name == "--speed") {
        a.speed = std::stod(v);
        if (!(a.speed > 0)) throw std::runtime_error("--speed must be > 0");
      } else {
        throw std::runtime_error("unknown flag for " + cmd + ": " + name);
      }
    }
    if (a.dirs.empty()) throw std::runtime_error(cmd + " needs --record-dir");
    if (!a.instance.empty() &&
        std::find(a.dirs.begin(), a.dirs.end(), a.instance) == a.dirs.end()) {
      throw std::runtime_error("--instance must be one of the --record-dir values");
    }
    if (a.follow && a.dirs.size() > 1) {
      throw std::runtime_error("--follow reads one --record-dir (run one per instance)");
    }
    if (cmd == "verify") {
      exit_code = cmd_verify(a);
    } else if (cmd == "export") {
      if (a.format == "text") a.format = "jsonl";
      exit_code = cmd_export(a);
    } else if (cmd == "sessions") {
      exit_code = cmd_sessions(a);
    } else {
      exit_code = cmd_replay(a);
    }
  } catch (const std::exception& e) {
    std::cerr << "pgwarden " << cmd << ": " << e.what() << "\n" << kUsage;
    exit_code = 2;
  }
  return true;
}

}  // namespace pgwarden::recorder
