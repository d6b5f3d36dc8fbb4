#include "core/admin_cli.h"

#include <httplib.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "protocol/json.h"

namespace pgwarden::core {

namespace {

constexpr const char* kUsage =
    "usage: pgwarden approvals list [--json]\n"
    "       pgwarden approvals approve ID [--reason TEXT]\n"
    "       pgwarden approvals deny ID [--reason TEXT]\n"
    "       pgwarden sessions --live [--json]\n"
    "       pgwarden kill SESSION [--reason TEXT]\n"
    "       pgwarden lock NAME --for DURATION [--reason TEXT]   (NAME: identity or group;\n"
    "                                                         DURATION: 90s, 15m, 1h, 2d)\n"
    "       pgwarden unlock NAME\n"
    "       pgwarden locks [--json]\n"
    "common flags:\n"
    "  --admin URL        the admin API (default $PGWARDEN_ADMIN, else http://127.0.0.1:9187);\n"
    "                     repeatable (or $PGWARDEN_ADMIN=URL,URL): with several instances,\n"
    "                     lists merge every instance's (INSTANCE column), approve/deny/kill go\n"
    "                     to the one that has the ID, lock/unlock to all\n"
    "  --token-file FILE  your OIDC token (default: $PGWARDEN_TOKEN)\n"
    "  --ca-file FILE     CA certificates for an https admin API (default: system CAs)\n";

struct CliArgs {
  std::string command;  // approvals, sessions, kill, lock, unlock, locks
  std::vector<std::string> admins;
  std::string token_file, ca_file, reason, verb, id, duration;
  bool json = false, live = false;
};

// "90", "90s", "15m", "1h", "2d" -> seconds; 0 when malformed.
std::uint64_t parse_duration(const std::string& text) {
  if (text.empty() || text.size() > 12) return 0;
  std::size_t digits = text.find_first_not_of("0123456789");
  if (digits == 0) return 0;
  const std::uint64_t n = std::stoull(text.substr(0, digits));
  const std::string unit = digits == std::string::npos ? "s" : text.substr(digits);
  const std::uint64_t scale = unit == "s"   ? 1
                              : unit == "m" ? 60
                              : unit == "h" ? 3600
                              : unit == "d" ? 86400
                                            : 0;
  return n * scale;
}

std::string clean(std::string_view s, std::size_t max) {
  std::string out(s.substr(0, max));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return out + (s.size() > max ? "..." : "");
}

std::string percent_encoded(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '@' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

// The INSTANCE column when several instances answered (their elements carry "instance").
std::string instance_cell(simdjson::dom::element e, bool several) {
  if (!several) return "";
  std::string_view v;
  if (e["instance"].get(v) != simdjson::SUCCESS) v = "";
  char out[64];
  std::snprintf(out, sizeof out, "%-21s  ", clean(v, 21).c_str());
  return out;
}

int print_sessions(const std::string& body, bool several) {
  simdjson::dom::parser parser;
  simdjson::dom::array list;
  if (parser.parse(body).get_array().get(list) != simdjson::SUCCESS) {
    std::cerr << "pgwarden sessions: unexpected answer: " << body;
    return 1;
  }
  if (several) std::printf("%-21s  ", "INSTANCE");
  std::printf("%-16s  %-24s  %-21s  %-12s  %-12s  %7s  %-22s  %s\n", "SESSION", "IDENTITY",
              "CLIENT", "DATABASE", "ROLE", "AGE", "STATE", "STATEMENT");
  for (simdjson::dom::element e : list) {
    auto text_of = [&](const char* key) {
      std::string_view v;
      return e[key].get(v) == simdjson::SUCCESS ? v : std::string_view();
    };
    std::int64_t age = 0;
    if (e["age_s"].get(age) != simdjson::SUCCESS) age = 0;
    std::fputs(instance_cell(e, several).c_str(), stdout);
    std::printf("%-16s  %-24s  %-21s  %-12s  %-12s  %6llds  %-22s  %s\n",
                clean(text_of("id"), 16).c_str(), clean(text_of("identity"), 40).c_str(),
                clean(text_of("client"), 40).c_str(), clean(text_of("database"), 30).c_str(),
                clean(text_of("role"), 30).c_str(), static_cast<long long>(age),
                clean(text_of("state"), 30).c_str(), clean(text_of("statement"), 80).c_str());
  }
  return 0;
}

int print_locks(const std::string& body, bool several) {
  simdjson::dom::parser parser;
  simdjson::dom::array list;
  if (parser.parse(body).get_array().get(list) != simdjson::SUCCESS) {
    std::cerr << "pgwarden locks: unexpected answer: " << body;
    return 1;
  }
  if (several) std::printf("%-21s  ", "INSTANCE");
  std::printf("%-32s  %-10s  %-24s  %s\n", "NAME", "LEFT", "BY", "REASON");
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  for (simdjson::dom::element e : list) {
    std::string_view name, by, reason;
    std::int64_t until = 0;
    if (e["name"].get(name) || e["by"].get(by) || e["reason"].get(reason) ||
        e["until_us"].get(until)) {
      continue;
    }
    const long long left = std::max<long long>(0, until / 1'000'000 - now);
    char left_text[32];
    std::snprintf(left_text, sizeof left_text, "%lldm%02llds", left / 60, left % 60);
    std::fputs(instance_cell(e, several).c_str(), stdout);
    std::printf("%-32s  %-10s  %-24s  %s\n", clean(name, 64).c_str(), left_text,
                clean(by, 40).c_str(), clean(reason, 80).c_str());
  }
  return 0;
}

std::string read_token(const CliArgs& a) {
  std::string token;
  if (!a.token_file.empty()) {
    std::ifstream in(a.token_file);
    if (!in) throw std::runtime_error("cannot read --token-file " + a.token_file);
    std::stringstream ss;
    ss << in.rdbuf();
    token = ss.str();
  } else if (const char* env = std::getenv("PGWARDEN_TOKEN"); env != nullptr) {
    token = env;
  }
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  if (token.empty()) throw std::runtime_error("no token: set PGWARDEN_TOKEN or use --token-file");
  return token;
}

std::string age_of(std::int64_t since_us) {
  const std::int64_t s = static_cast<std::int64_t>(std::time(nullptr)) - since_us / 1'000'000;
  char out[32];
  if (s < 120) {
    std::snprintf(out, sizeof out, "%llds", static_cast<long long>(s < 0 ? 0 : s));
  } else {
    std::snprintf(out, sizeof out, "%lldm", static_cast<long long>(s / 60));
  }
  return out;
}

int print_list(const std::string& body, bool several) {
  simdjson::dom::parser parser;
  simdjson::dom::array list;
  if (parser.parse(body).get_array().get(list) != simdjson::SUCCESS) {
    std::cerr << "pgwarden approvals: unexpected answer: " << body;
    return 1;
  }
  if (several) std::printf("%-21s  ", "INSTANCE");
  std::printf("%-16s  %-6s  %-24s  %-16s  %-8s  %s\n", "ID", "WAITS", "REQUESTED BY", "RULE",
              "APPROVED", "STATEMENT");
  for (simdjson::dom::element e : list) {
    auto text_of = [&](const char* key) {
      std::string_view v;
      return e[key].get(v) == simdjson::SUCCESS ? v : std::string_view();
    };
    auto number_of = [&](const char* key, std::int64_t fallback) {
      std::int64_t v = 0;
      return e[key].get(v) == simdjson::SUCCESS ? v : fallback;
    };
    const std::string_view id = text_of("id"), identity = text_of("identity"),
                           rule = text_of("rule"), statement = text_of("statement");
    const std::int64_t since = number_of("requested_at_us", 0);
    const std::int64_t required = number_of("approvals_required", 1);
    simdjson::dom::array by;
    std::size_t approved = 0;
    if (e["approved_by"].get(by) == simdjson::SUCCESS) approved = by.size();
    std::string text(statement.substr(0, 100));
    for (char& c : text) {
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    std::fputs(instance_cell(e, several).c_str(), stdout);
    std::printf("%-16.*s  %-6s  %-24.*s  %-16.*s  %zu/%lld     %s%s\n", int(id.size()), id.data(),
                age_of(since).c_str(), int(identity.size()), identity.data(), int(rule.size()),
                rule.data(), approved, static_cast<long long>(required), text.c_str(),
                statement.size() > 100 ? "..." : "");
  }
  return 0;
}

// The admin URLs: --admin (repeatable), else $PGWARDEN_ADMIN (comma-separated), else loopback.
std::vector<std::string> admin_urls(const CliArgs& a) {
  std::vector<std::string> urls = a.admins;
  if (urls.empty()) {
    const char* env = std::getenv("PGWARDEN_ADMIN");
    std::string list = env != nullptr && *env != '\0' ? env : "http://127.0.0.1:9187";
    std::size_t start = 0;
    while (start <= list.size()) {
      const std::size_t comma = std::min(list.find(',', start), list.size());
      if (comma > start) urls.push_back(list.substr(start, comma - start));
      start = comma + 1;
    }
  }
  for (std::string& base : urls) {
    while (!base.empty() && base.back() == '/') base.pop_back();
    if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0) {
      throw std::runtime_error("--admin must be an http:// or https:// URL: " + base);
    }
  }
  if (urls.empty()) throw std::runtime_error("no admin URL");
  return urls;
}

// One instance's answer: its status and body, or status 0 and the transport error.
struct Answer {
  int status = 0;
  std::string body;
};

Answer call(const CliArgs& a, const std::string& base, const std::string& token) {
  httplib::Client cli(base);
  if (!cli.is_valid()) throw std::runtime_error("cannot use admin URL " + base);
  if (!a.ca_file.empty()) cli.set_ca_cert_path(a.ca_file.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(15);
  cli.set_bearer_token_auth(token);
  auto with_reason = [&](std::string body) {
    if (!a.reason.empty()) {
      body += body.size() > 1 ? ",\"reason\":" : "\"reason\":";
      protocol::append_json_string(body, a.reason);
    }
    return body + "}";
  };
  auto send = [&]() -> httplib::Result {
    if (a.command == "sessions") return cli.Get("/api/v1/sessions");
    if (a.command == "locks") return cli.Get("/api/v1/locks");
    if (a.command == "kill") {
      return cli.Delete("/api/v1/sessions/" + a.id, with_reason("{"), "application/json");
    }
    if (a.command == "unlock") {
      return cli.Delete("/api/v1/locks/" + percent_encoded(a.id));
    }
    if (a.command == "lock") {
      std::string body = "{\"name\":";
      protocol::append_json_string(body, a.id);
      body += ",\"seconds\":" + std::to_string(parse_duration(a.duration));
      return cli.Post("/api/v1/locks", with_reason(body), "application/json");
    }
    if (a.verb == "list") return cli.Get("/api/v1/approvals");
    return cli.Post("/api/v1/approvals/" + a.id + "/" + a.verb, with_reason("{"),
                    "application/json");
  };
  const httplib::Result r = send();
  if (!r) return Answer{0, httplib::to_string(r.error())};
  return Answer{r->status, r->body};
}

// Several instances' JSON arrays as one, each element tagged with the instance that sent it.
bool merge_lists(const std::vector<std::pair<std::string, std::string>>& bodies, std::string& out) {
  simdjson::dom::parser parser;
  out = "[";
  for (const auto& [instance, body] : bodies) {
    simdjson::dom::array list;
    if (parser.parse(body).get_array().get(list) != simdjson::SUCCESS) return false;
    for (simdjson::dom::element e : list) {
      const std::string element = simdjson::minify(e);
      if (element.size() < 2 || element.front() != '{') return false;
      if (out.size() > 1) out += ',';
      out += "{\"instance\":";
      protocol::append_json_string(out, instance);
      if (element.size() > 2) out += ',';
      out.append(element, 1);
    }
  }
  out += "]\n";
  return true;
}

void report(const std::string& who, const std::string& base, const Answer& r) {
  std::cerr << who << ": " << base << ": ";
  if (r.status != 0) std::cerr << r.status << " ";
  std::cerr << r.body;
  if (r.body.empty() || r.body.back() != '\n') std::cerr << "\n";
}

int run(const CliArgs& a) {
  const std::vector<std::string> urls = admin_urls(a);
  const std::string token = read_token(a);
  const std::string who = "pgwarden " + a.command;
  const bool several = urls.size() > 1;
  const bool listing = a.command == "sessions" || a.command == "locks" || a.verb == "list";
  const bool to_all = a.command == "lock" || a.command == "unlock";
  int code = 0;
  if (listing) {
    // Every instance's list; one that does not answer is named, and the exit code says the
    // list is incomplete.
    std::vector<std::pair<std::string, std::string>> bodies;
    for (const std::string& base : urls) {
      const Answer r = call(a, base, token);
      if (r.status < 200 || r.status > 299) {
        report(who, base, r);
        code = 1;
        continue;
      }
      bodies.emplace_back(base.substr(base.find("://") + 3), r.body);
    }
    std::string body;
    if (!several) {
      if (bodies.empty()) return code;
      body = bodies.front().second;
    } else if (!merge_lists(bodies, body)) {
      std::cerr << who << ": unexpected answer\n";
      return 1;
    }
    int printed = 0;
    if (a.json) {
      std::cout << body;
    } else if (a.command == "sessions") {
      printed = print_sessions(body, several);
    } else if (a.command == "locks") {
      printed = print_locks(body, several);
    } else {
      printed = print_list(body, several);
    }
    return code != 0 ? code : printed;
  }
  // approve, deny, kill: the instance that has the ID (404 elsewhere); lock, unlock: all.
  std::vector<std::pair<std::string, Answer>> missing;
  bool done = false;
  for (const std::string& base : urls) {
    const Answer r = call(a, base, token);
    if (r.status >= 200 && r.status <= 299) {
      if (several) std::cout << base << ": ";
      std::cout << r.body;
      if (several && (r.body.empty() || r.body.back() != '\n')) std::cout << "\n";
      done = true;
      if (!to_all) break;
    } else if (r.status == 404 && !to_all) {
      missing.emplace_back(base, r);
    } else {
      report(who, base, r);
      code = 1;
    }
  }
  if (!done && code == 0) {
    for (const auto& [base, r] : missing) report(who, base, r);
    return 1;
  }
  return code;
}

}  // namespace

bool run_admin_command(const std::vector<std::string>& args, int& code) {
  if (args.empty()) return false;
  const std::string& cmd = args[0];
  const bool live = std::find(args.begin(), args.end(), "--live") != args.end();
  if (cmd != "approvals" && cmd != "kill" && cmd != "lock" && cmd != "unlock" && cmd != "locks" &&
      !(cmd == "sessions" && live)) {
    return false;  // `pgwarden sessions` without --live reads recordings (recorder/tools.h)
  }
  CliArgs a;
  a.command = cmd;
  try {
    std::vector<std::string> positional;
    for (std::size_t i = 1; i < args.size(); ++i) {
      const std::string& name = args[i];
      if (name == "--help" || name == "-h") {
        std::cout << kUsage;
        code = 0;
        return true;
      }
      if (name == "--json" || name == "--live") {
        (name == "--json" ? a.json : a.live) = true;
        continue;
      }
      if (name.rfind("--", 0) != 0) {
        positional.push_back(name);
        continue;
      }
      if (i + 1 >= args.size()) throw std::runtime_error(name + " needs a value");
      const std::string& v = args[++i];
      if (name == "--admin") {
        a.admins.push_back(v);
      } else if (name == "--token-file") {
        a.token_file = v;
      } else if (name == "--ca-file") {
        a.ca_file = v;
      } else if (name == "--reason") {
        a.reason = v;
      } else if (name == "--for" && cmd == "lock") {
        a.duration = v;
      } else {
        throw std::runtime_error("unknown flag for " + cmd + ": " + name);
      }
    }
    auto hex_id = [](const std::string& id, const char* what) {
      if (id.size() != 16 || id.find_first_not_of("0123456789abcdef") != std::string::npos) {
        throw std::runtime_error(std::string(what) + " is 16 hex digits");
      }
    };
    if (cmd == "approvals") {
      if (positional.empty()) throw std::runtime_error("expected list, approve ID or deny ID");
      a.verb = positional[0];
      if (a.verb == "list" && positional.size() == 1) {
        // nothing more
      } else if ((a.verb == "approve" || a.verb == "deny") && positional.size() == 2) {
        a.id = positional[1];
        hex_id(a.id, "an approval ID (see pgwarden approvals list)");
      } else {
        throw std::runtime_error("expected list, approve ID or deny ID");
      }
    } else if (cmd == "sessions" || cmd == "locks") {
      if (!positional.empty()) throw std::runtime_error(cmd + " takes no arguments");
    } else {
      if (positional.size() != 1) throw std::runtime_error(cmd + " takes one argument");
      a.id = positional[0];
      if (cmd == "kill") hex_id(a.id, "a session ID (see pgwarden sessions --live)");
      if (cmd == "lock" && parse_duration(a.duration) == 0) {
        throw std::runtime_error("lock needs --for DURATION (e.g. 90s, 15m, 1h, 2d)");
      }
    }
    code = run(a);
  } catch (const std::exception& e) {
    std::cerr << "pgwarden " << cmd << ": " << e.what() << "\n" << kUsage;
    code = 2;
  }
  return true;
}

}  // namespace pgwarden::core
