// `pgwarden approvals list|approve ID|deny ID [--reason TEXT]`: the admin API from a shell. The
// token comes from PGWARDEN_TOKEN or --token-file (never from the command line, where `ps` shows
// it); the API from --admin URL or PGWARDEN_ADMIN (default http://127.0.0.1:9187).
#pragma once

#include <string>
#include <vector>

namespace pgwarden::core {

// True when `args` name an admin command; `code` is then its exit status.
bool run_admin_command(const std::vector<std::string>& args, int& code);

}  // namespace pgwarden::core
