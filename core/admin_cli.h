// The admin API from a shell: `pgwarden approvals list|approve ID|deny ID`, `sessions --live`,
// `kill ID`, `lock NAME --for 1h`, `unlock NAME`, `locks`. The
// token comes from PGWARDEN_TOKEN or --token-file (never from the command line, where `ps` shows
// it); the API from --admin URL or PGWARDEN_ADMIN (default http://127.0.0.1:9187).
#pragma once

#include <string>
#include <vector>

namespace pgwarden::core {

// True when `args` name an admin command; `code` is then its exit status.
bool run_admin_command(const std::vector<std::string>& args, int& code);

}  // namespace pgwarden::core
