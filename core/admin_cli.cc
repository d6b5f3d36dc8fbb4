#include "core/admin_cli.h"

#include <httplib.h>
#include <simdjson.h>

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
    "common flags:\n"
    "  --admin URL        the admin API (default $PGWARDEN_ADMIN, else http://127.0.0.1:9187)\n"
    "  --token-file FILE  your OIDC token (default: $PGWARDEN_TOKEN)\n"
    "  --ca-file FILE     CA certificates for an https admin API (default: system CAs)\n";

struct CliArgs {
  std::string admin, token_file, ca_file, reason, verb, id;
  bool json = false;
};

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

int print_list(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::array list;
  if (parser.parse(body).get_array().get(list) != simdjson::SUCCESS) {
    std::cerr << "pgwarden approvals: unexpected answer: " << body;
    return 1;
  }
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
    std::printf("%-16.*s  %-6s  %-24.*s  %-16.*s  %zu/%lld     %s%s\n", int(id.size()), id.data(),
                age_of(since).c_str(), int(identity.size()), identity.data(), int(rule.size()),
                rule.data(), approved, static_cast<long long>(required), text.c_str(),
                statement.size() > 100 ? "..." : "");
  }
  return 0;
}

int run(const CliArgs& a) {
  std::string base = a.admin;
  if (base.empty()) {
    const char* env = std::getenv("PGWARDEN_ADMIN");
    base = env != nullptr && *env != '\0' ? env : "http://127.0.0.1:9187";
  }
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0) {
    throw std::runtime_error("--admin must be an http:// or https:// URL");
  }
  const std::string token = read_token(a);
  httplib::Client cli(base);
  if (!cli.is_valid()) throw std::runtime_error("cannot use admin URL " + base);
  if (!a.ca_file.empty()) cli.set_ca_cert_path(a.ca_file.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(15);
  cli.set_bearer_token_auth(token);
  auto send = [&]() -> httplib::Result {
    if (a.verb == "list") return cli.Get("/api/v1/approvals");
    std::string body;
    if (!a.reason.empty()) {
      body = "{\"reason\":";
      protocol::append_json_string(body, a.reason);
      body += "}";
    }
    return cli.Post("/api/v1/approvals/" + a.id + "/" + a.verb, body, "application/json");
  };
  const httplib::Result r = send();
  if (!r) {
    std::cerr << "pgwarden approvals: " << base << ": " << httplib::to_string(r.error()) << "\n";
    return 1;
  }
  if (r->status != 200 && r->status != 202) {
    std::cerr << "pgwarden approvals: " << r->status << " " << r->body;
    if (!r->body.empty() && r->body.back() != '\n') std::cerr << "\n";
    return 1;
  }
  if (a.verb == "list" && !a.json) return print_list(r->body);
  std::cout << r->body;
  return 0;
}

}  // namespace

bool run_admin_command(const std::vector<std::string>& args, int& code) {
  if (args.empty() || args[0] != "approvals") return false;
  CliArgs a;
  try {
    std::vector<std::string> positional;
    for (std::size_t i = 1; i < args.size(); ++i) {
      const std::string& name = args[i];
      if (name == "--help" || name == "-h") {
        std::cout << kUsage;
        code = 0;
        return true;
      }
      if (name == "--json") {
        a.json = true;
        continue;
      }
      if (name.rfind("--", 0) != 0) {
        positional.push_back(name);
        continue;
      }
      if (i + 1 >= args.size()) throw std::runtime_error(name + " needs a value");
      const std::string& v = args[++i];
      if (name == "--admin") {
        a.admin = v;
      } else if (name == "--token-file") {
        a.token_file = v;
      } else if (name == "--ca-file") {
        a.ca_file = v;
      } else if (name == "--reason") {
        a.reason = v;
      } else {
        throw std::runtime_error("unknown flag: " + name);
      }
    }
    if (positional.empty()) throw std::runtime_error("expected list, approve ID or deny ID");
    a.verb = positional[0];
    if (a.verb == "list" && positional.size() == 1) {
      // nothing more
    } else if ((a.verb == "approve" || a.verb == "deny") && positional.size() == 2) {
      a.id = positional[1];
      if (a.id.size() != 16 || a.id.find_first_not_of("0123456789abcdef") != std::string::npos) {
        throw std::runtime_error("an approval ID is 16 hex digits (see pgwarden approvals list)");
      }
    } else {
      throw std::runtime_error("expected list, approve ID or deny ID");
    }
    code = run(a);
  } catch (const std::exception& e) {
    std::cerr << "pgwarden approvals: " << e.what() << "\n" << kUsage;
    code = 2;
  }
  return true;
}

}  // namespace pgwarden::core
