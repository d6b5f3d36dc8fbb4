// pgwarden: the gateway binary.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <openssl/opensslv.h>

#include "core/admin_cli.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/server.h"
#include "policy/library_versions.h"
#include "recorder/tools.h"

int main(int argc, char** argv) {
  using namespace pgwarden::core;
  std::vector<std::string> args(argv + 1, argv + argc);
  // Offline tools: pgwarden sessions | replay | verify | export.
  // The admin API's client: approvals, sessions --live, kill, lock, unlock, locks.
  if (int code = 0; run_admin_command(args, code)) return code;
  if (int code = 0; pgwarden::recorder::run_tool(args, code)) return code;
  ParsedFlags parsed = parse_flags(args);
  if (parsed.exit_now) {
    if (parsed.message == "version") {
      std::printf("pgwarden 0.1.0 (liburing, %s, %s)\n", OPENSSL_VERSION_TEXT,
                  pgwarden::policy::library_versions().c_str());
      return 0;
    }
    std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  const std::string& lvl = parsed.config.log_level;
  set_log_level(lvl == "debug"   ? LogLevel::Debug
                : lvl == "warn"  ? LogLevel::Warn
                : lvl == "error" ? LogLevel::Error
                                 : LogLevel::Info);
  set_log_format(parsed.config.log_format == "json" ? LogFormat::Json : LogFormat::Text);
  set_log_rate_limit(parsed.config.log_rate_limit);
  // Lines are queued from here on; leaving main flushes them (a bounded wait).
  LogWriterScope log_writer;
  try {
    return run_server(parsed.config);
  } catch (const std::exception& e) {
    PGW_ERROR("pgwarden: %s", e.what());
    return 1;
  }
}
