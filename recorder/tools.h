// The offline tools behind `pgwarden sessions | replay | verify | export`: they read a record
// directory without a running gateway (synchronous file I/O) and print to stdout.
#pragma once

#include <string>
#include <vector>

namespace pgwarden::recorder {

// True when args[0] names a tool; then `exit_code` holds its result.
bool run_tool(const std::vector<std::string>& args, int& exit_code);

}  // namespace pgwarden::recorder
