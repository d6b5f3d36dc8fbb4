// The gateway process: opens the SO_REUSEPORT listeners, starts one pinned worker per core, and
// turns SIGTERM/SIGINT into a graceful drain (a second signal skips the grace period).
#pragma once

#include "core/flags.h"

namespace pgwarden::core {

// Runs until shut down by a signal; returns the process exit code.
int run_server(const Config& config);

}  // namespace pgwarden::core
