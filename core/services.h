// What a core offers the stages of its sessions: configuration, counters, the policy snapshot in
// force, and the per-core engines and caches. Owned by the Worker (one per core) and refreshed
// between loop iterations; a plain struct, so stage tests can build one without a ring.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "policy/masking.h"
#include "policy/rules.h"

namespace pgwarden::core {

struct Config;
struct WorkerStats;
class Approvals;
class Locks;
class RecordSink;

// Masked columns resolved through the catalog, per database and profile query (per core).
struct CatalogEntry {
  std::shared_ptr<const policy::MaskedAttrs> attrs;
  std::int64_t resolved_ns = 0;
};
using CatalogCache = std::unordered_map<std::string, CatalogEntry>;

struct CoreServices {
  const Config* config = nullptr;
  unsigned core = 0;
  WorkerStats* stats = nullptr;
  // The statement policy in force (null: none). Replaced between loop iterations only, so the
  // rules and profiles stages point into stay alive for the whole handling of an event.
  const policy::Policy* policy = nullptr;
  policy::PolicyEngine* engine = nullptr;
  policy::Masker* masker = nullptr;
  CatalogCache* catalog = nullptr;
  Approvals* approvals = nullptr;  // null: no admin endpoint, holds cannot be decided
  Locks* locks = nullptr;          // null: no admin endpoint, nobody can be locked out
  RecordSink* recorder = nullptr;  // null: recording off
  std::int64_t now_ns = 0;
};

}  // namespace pgwarden::core
