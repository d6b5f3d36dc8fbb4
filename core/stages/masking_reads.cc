// The masking stage's column rules that follow the data (issue 14): what each statement's values
// are computed from (policy/output_reads.h), kept per request, prepared statement and portal
// while the caller's profile has column rules; computed result columns masked by it; errors and
// notices of statements that read a masked column withheld; statements that would copy a masked
// value where it can be read back unmasked refused.
#include <algorithm>

#include "core/stages/masking_stage.h"
#include "core/worker.h"
#include "policy/rules.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
using policy::MaskProfile;

namespace {

constexpr std::size_t kReadsCacheSize = 64;   // per session
constexpr std::size_t kReadsWays = 4;         // set-associative
constexpr std::size_t kMaxCachedText = 4096;  // longer texts are read every time
constexpr std::size_t kMaxNames = 10000;      // statements and portals kept (each)

// What a statement nobody told this stage about reads: anything (computed values are NULL, its
// errors' texts withheld).
const std::shared_ptr<const std::vector<policy::StatementReads>>& unknown_reads() {
  static const auto r = [] {
    std::vector<policy::StatementReads> v(1);
    v[0].opaque = true;
    return std::make_shared<const std::vector<policy::StatementReads>>(std::move(v));
  }();
  return r;
}

// Errors of these SQLSTATE classes are about the connection, the transaction and resources,
// never a value: their texts are kept (a failed transaction, a serialization failure, a cancel).
bool data_free(std::string_view sqlstate) {
  // (Not 42 or 3F: a cast to regclass or regproc quotes the value in a "does not exist".)
  static constexpr std::string_view kClasses[] = {"08", "25", "40", "53", "57"};
  for (const std::string_view c : kClasses) {
    if (sqlstate.substr(0, 2) == c) return true;
  }
  return false;
}

std::string name_of(const policy::ReadSet& r, const policy::ColumnRule& rule) {
  if (r.whole_row) return "a whole row";
  for (const std::string& n : r.names) {
    if (policy::glob_match(rule.column, n)) return "column \"" + n + "\"";
  }
  return "a masked column";
}

// Whether a number the shape stands for can be an ordinal that says what is read (ORDER BY 1,
// GROUP BY 2, GROUP BY ALL 2, DISTINCT ON (1), ROLLUP (1, 2): the first or second select-list
// entry): one right after "by", "all", "distinct", "(" or "," in a text that has "order",
// "group" or "distinct" anywhere. A function of the shape alone: a shape has every letter of its
// text, and a number's place (\x01) keeps the letters around it apart.
bool ordinal_possible(std::string_view shape) {
  const std::string_view text = shape;
  bool after_list = false;
  for (std::size_t i = shape.find('\x01'); i != std::string_view::npos && !after_list;
       i = shape.find('\x01', i + 1)) {
    std::size_t j = i;
    while (j > 0 && (shape[j - 1] == ' ' || shape[j - 1] == '\t' || shape[j - 1] == '\n' ||
                     shape[j - 1] == '\r')) {
      --j;
    }
    const char c = j > 0 ? static_cast<char>(shape[j - 1] | 0x20) : '\0';
    // ("l" and "t": GROUP BY ALL 2, GROUP BY DISTINCT 2.)
    after_list = c == '(' || c == ',' || c == 'y' || c == 'l' || c == 't';
  }
  if (!after_list) return false;
  // One pass: only where one of the words starts is it compared.
  const auto at = [&](std::size_t i, std::string_view word) {
    if (i + word.size() > text.size()) return false;
    for (std::size_t k = 1; k < word.size(); ++k) {
      if (static_cast<char>(text[i + k] | 0x20) != word[k]) return false;
    }
    return true;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    switch (static_cast<char>(text[i] | 0x20)) {
      case 'o':
        if (at(i, "order")) return true;
        break;
      case 'g':
        if (at(i, "group")) return true;
        break;
      case 'd':
        if (at(i, "distinct")) return true;
        break;
      default:
        break;
    }
  }
  return false;
}

}  // namespace

MaskingStage::Reads MaskingStage::reads_for(std::string_view text, std::uint64_t judged) {
  last_entry_ = nullptr;
  if (text.size() > kMaxCachedText) {
    return std::make_shared<const std::vector<policy::StatementReads>>(
        policy::statement_reads(text));
  }
  // Numbers do not change what a statement reads, but for ordinals: texts differing only in
  // numbers share an entry unless one may be an ordinal. (The policy stage has mostly just
  // judged this text, and kept its shape.) An entry is kept under a shape only when no number
  // of the shape can be an ordinal, so finding the shape is enough; else under the text.
  std::string_view key = text;
  std::size_t hash = 0;
  bool hashed = false;
  const policy::PolicyEngine* engine = host_.core().engine;
  if (judged != 0 && engine != nullptr && engine->last_shape(judged, key, &hash)) {
    hashed = true;
  } else if (policy::shape_of(text, shape_)) {
    key = shape_;
  }
  if (!hashed) hash = policy::text_hash(key);
  if (reads_cache_.empty()) reads_cache_.resize(kReadsCacheSize);
  // Four ways per set, the least recently used replaced: a few shapes that share a set do not
  // push each other out on every statement.
  // (A shape and a text never match each other: a text with a \x01 of its own has no shape.)
  bool shaped = key.data() != text.data();
  const auto find = [this, &shaped](std::string_view k, std::size_t h) {
    const std::size_t set = h % (kReadsCacheSize / kReadsWays) * kReadsWays;
    CachedReads* victim = &reads_cache_[set];
    for (std::size_t w = 0; w < kReadsWays; ++w) {
      CachedReads& e = reads_cache_[set + w];
      if (e.reads && e.shape == shaped && e.key == k) return std::pair{&e, true};
      if (e.used < victim->used) victim = &e;
    }
    return std::pair{victim, false};
  };
  auto [entry, found] = find(key, hash);
  if (!found && shaped && ordinal_possible(key)) {
    key = text;
    shaped = false;
    std::tie(entry, found) = find(key, policy::text_hash(key));
  }
  if (found) {
    entry->used = ++reads_clock_;
    last_entry_ = entry;
    return entry->reads;
  }
  CachedReads* victim = entry;
  auto reads =
      std::make_shared<const std::vector<policy::StatementReads>>(policy::statement_reads(text));
  // A text that did not parse is kept under no shape: a text of its shape may parse (1.1.1
  // against 1), and read what this one was not found to (attacker review).
  if (shaped && std::any_of(reads->begin(), reads->end(),
                            [](const policy::StatementReads& s) { return s.unread; })) {
    return reads;
  }
  victim->key.assign(key);
  victim->shape = shaped;
  victim->reads = std::move(reads);
  victim->used = ++reads_clock_;
  victim->passes = nullptr;
  last_entry_ = victim;
  return victim->reads;
}

// A write that stores a masked column's value elsewhere (another table or column, a setting, a
// notification) would let the caller read it back unmasked: refused.
bool MaskingStage::refuse_copying_text(FrontendMessage& m, const MaskProfile& p) {
  pending_ = reads_for(m.view.text, m.judged);
  // A statement's reads are mostly found refused by nothing, and then again each time it runs:
  // their cache entry says so for the profile (refusal_of reads nothing else).
  CachedReads* const entry = last_entry_;
  if (entry != nullptr && entry->passes == &p && entry->passes_policy == policy_id_) return false;
  for (const policy::StatementReads& s : *pending_) {
    const policy::ReadsRefusal r = policy::refusal_of(p, s);
    if (r.why == policy::ReadsRefusal::None) continue;
    if (r.why == policy::ReadsRefusal::Tests) {
      m.refuse(pr::sqlstate::kInsufficientPrivilege,
               "pgwarden: the statement tests " + name_of(*r.set, *r.rule) +
                   ", masked by profile \"" + p.name +
                   "\", in a condition (WHERE, JOIN, GROUP BY, ORDER BY, LIMIT, a window); the "
                   "profile refuses that (\"conditions\": \"refuse\"), since conditions can "
                   "infer a masked value");
    } else if (r.why == policy::ReadsRefusal::Stores) {
      m.refuse(pr::sqlstate::kInsufficientPrivilege,
               "pgwarden: the statement would store a value of " + name_of(*r.set, *r.rule) +
                   ", masked by profile \"" + p.name +
                   "\", where it could be read back unmasked (a table, a setting or a "
                   "notification)");
    } else {
      const char* why = r.why == policy::ReadsRefusal::Code
                            ? "runs code pgwarden does not read (DO, or a function, rule or "
                              "trigger it defines), which could compute from a masked column out "
                              "of sight"
                            : "reads the planner's statistics, which hold sample values of every "
                              "column";
      m.refuse(pr::sqlstate::kInsufficientPrivilege,
               std::string("pgwarden: while the column rules of masking profile \"") + p.name +
                   "\" apply, this statement is refused: it " + why);
    }
    pending_.reset();
    return true;
  }
  if (entry != nullptr) {
    entry->passes = &p;
    entry->passes_policy = policy_id_;
  }
  return false;
}

void MaskingStage::forget_statement(std::string_view name) {
  // The unnamed statement, named again by nearly every statement, stays as an empty entry (an
  // empty entry is no name): naming it again allocates nothing.
  const auto it = by_statement_.find(pr::name_key(name));
  if (it != by_statement_.end()) {
    if (name.empty()) {
      it->second = {};
    } else {
      by_statement_.erase(it);
    }
  }
}

void MaskingStage::remember_reads(FrontendMessage& m, pr::Request* r) {
  Reads reads = std::move(pending_);
  pending_.reset();
  if (m.verdict == Verdict::Hold) {
    held_reads_ = std::move(reads);  // until it is decided
    return;
  }
  const MaskProfile* p = profile();
  if (p == nullptr || p->columns.empty() || r == nullptr ||
      (m.verdict != Verdict::Forward && m.verdict != Verdict::Replace)) {
    return;
  }
  const pr::FrontendView& v = m.view;
  switch (v.type) {
    case pr::fe::kSync:
      last_sync_ = r->id;
      return;
    case pr::fe::kQuery:
      last_sync_ = r->id;
      by_request_.put(r->id, reads ? reads : unknown_reads());
      for (const policy::StatementReads& s : reads ? *reads : *unknown_reads()) {
        if (s.renames || s.opaque) {
          // SQL-level PREPARE, DEALLOCATE, DECLARE, CLOSE (or code that may run them) change
          // what names mean: what was kept of every name is forgotten.
          by_statement_.clear();
          portals_.clear();
          break;
        }
      }
      return;
    case pr::fe::kParse: {
      // (Past the bound on names a statement is not kept: running it is taken to read anything.)
      Statement kept{reads ? std::move(reads) : unknown_reads(), r->id};
      const std::string_view key = pr::name_key(v.name);
      const auto it = by_statement_.find(key);
      if (it != by_statement_.end()) {
        it->second = std::move(kept);
      } else if (by_statement_.size() < kMaxNames) {
        by_statement_.emplace(std::string(key), std::move(kept));
      }
      return;
    }
    case pr::fe::kBind:
      portals_.keep(v.name, statement_reads(pr::name_key(v.statement)), r->id);
      return;
    case pr::fe::kExecute: {
      const Reads& reads = portals_.find(v.name, last_sync_);
      by_request_.put(r->id, reads ? reads : unknown_reads());
      return;
    }
    case pr::fe::kClose:
      if (v.target == 'S') {
        by_statement_.erase(std::string(pr::name_key(v.name)));
      } else {
        portals_.erase(v.name);
      }
      return;
    default:
      return;
  }
}

void MaskingStage::InFlight::put(std::uint64_t id, Reads reads) {
  if (head_ == v_.size() || v_.back().first < id) {
    v_.emplace_back(id, std::move(reads));
    return;
  }
  const auto it = std::lower_bound(v_.begin() + static_cast<std::ptrdiff_t>(head_), v_.end(), id,
                                   [](const auto& e, std::uint64_t x) { return e.first < x; });
  if (it != v_.end() && it->first == id) {
    it->second = std::move(reads);
  } else {
    v_.emplace(it, id, std::move(reads));
  }
}

const MaskingStage::Reads* MaskingStage::InFlight::find(std::uint64_t id) const {
  const auto it = std::lower_bound(v_.begin() + static_cast<std::ptrdiff_t>(head_), v_.end(), id,
                                   [](const auto& e, std::uint64_t x) { return e.first < x; });
  return it != v_.end() && it->first == id && it->second ? &it->second : nullptr;
}

void MaskingStage::InFlight::erase_kept(std::uint64_t id) {
  if (head_ + 1 == v_.size() && v_[head_].first == id) {  // the only one kept: none left
    clear();
    return;
  }
  const auto it = std::lower_bound(v_.begin() + static_cast<std::ptrdiff_t>(head_), v_.end(), id,
                                   [](const auto& e, std::uint64_t x) { return e.first < x; });
  if (it == v_.end() || it->first != id) return;
  it->second.reset();
  while (head_ < v_.size() && !v_[head_].second) ++head_;
  if (head_ == v_.size()) {
    clear();  // keeps the capacity
  } else if (head_ >= 64 && head_ * 2 >= v_.size()) {
    v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

MaskingStage::Reads MaskingStage::statement_reads(std::string_view name) const {
  const auto it = by_statement_.find(name);
  if (it == by_statement_.end() || !it->second.reads) return unknown_reads();
  const Statement& s = it->second;
  return s.unconfirmed == 0 || s.unconfirmed > last_sync_ ? s.reads : unknown_reads();
}

const MaskingStage::Reads& MaskingStage::Portals::unconfirmed(const Bound& b) {
  return b.reads ? unknown_reads() : b.reads;
}

void MaskingStage::Portals::confirm(std::string_view name, std::uint64_t bind_id) {
  if (name.empty()) {
    if (unnamed_.bind_id == bind_id) unnamed_.confirmed = true;
    return;
  }
  const auto it = named_.find(name);
  if (it != named_.end() && it->second.bind_id == bind_id) it->second.confirmed = true;
}

void MaskingStage::Portals::forget_named(std::string_view name) {
  const auto it = named_.find(name);
  if (it != named_.end()) named_.erase(it);
}

bool MaskingStage::Portals::keep_named(std::string_view name, Reads reads, std::uint64_t bind_id) {
  const auto it = named_.find(name);
  if (it != named_.end()) {
    it->second = {std::move(reads), bind_id};
    return true;
  }
  if (named_.size() >= kMaxNames) return false;
  named_.emplace(std::string(name), Bound{std::move(reads), bind_id});
  return true;
}

const MaskingStage::Portals::Bound& MaskingStage::Portals::find_named(std::string_view name) const {
  static const Bound kNone;
  const auto it = named_.find(name);
  return it != named_.end() ? it->second : kNone;
}

void MaskingStage::Portals::clear() noexcept {
  unnamed_ = {};
  named_.clear();
}

// Portals end with their transaction: those bound before a ReadyForQuery outside a transaction
// block are gone (not those a pipelining client bound since).
void MaskingStage::Portals::ended(std::uint64_t before) {
  if (unnamed_.bind_id < before) unnamed_ = {};
  std::erase_if(named_, [&](const auto& e) { return e.second.bind_id < before; });
}

void MaskingStage::on_retired(const pr::Request& r) {
  by_request_.erase(r.id);
  if (copy_ && copy_->request == r.id) copy_.reset();
  if (r.id == copy_commit_id_) copy_commit_id_ = 0;
  // A Parse or Bind the server did not carry out (it failed, or was skipped after an error):
  // its name does not mean what was kept for it.
  if (r.failed || r.state == pr::RequestState::Skipped) {
    if (r.kind == pr::RequestKind::Parse) by_statement_.erase(r.name);
    if (r.kind == pr::RequestKind::Bind) portals_.erase(r.name);
  } else if (r.kind == pr::RequestKind::Parse) {
    const auto it = by_statement_.find(r.name);
    if (it != by_statement_.end() && it->second.unconfirmed == r.id) it->second.unconfirmed = 0;
  } else if (r.kind == pr::RequestKind::Bind) {
    portals_.confirm(r.name, r.id);
  }
}

std::pair<MaskingStage::Reads, std::size_t> MaskingStage::current_reads(
    const pr::Request* r) const {
  if (r == nullptr || (r->kind != pr::RequestKind::Query && r->kind != pr::RequestKind::Execute)) {
    return {};
  }
  const Reads* reads = by_request_.find(r->id);
  if (reads == nullptr) return {unknown_reads(), 0};
  const std::size_t index = r->kind == pr::RequestKind::Query ? r->results : 0;
  if (index >= (*reads)->size()) return {unknown_reads(), 0};
  return {*reads, index};
}

// An error or notice of a statement that reads a masked column (anywhere: a condition's cast
// fails quoting the value) or whose reads are out of sight: its texts are withheld, its
// severity and SQLSTATE kept (unless the SQLSTATE's class never carries a value).
bool MaskingStage::withhold_error(BackendMessage& m, const MaskProfile& p) {
  // A notice answers no request of its own: it is the statement's the server is running.
  const pr::Request* r = m.request() != nullptr ? m.request() : host_.model().answering();
  const auto [reads, index] = current_reads(r);
  if (!reads) return false;
  const policy::StatementReads& s = (*reads)[index];
  const policy::ColumnRule* rule = policy::rule_reading(p, s.anywhere);
  if (rule == nullptr && !s.opaque) return false;
  const auto e = pr::read_error(m.whole);
  // (Code out of sight may raise any SQLSTATE with any text.)
  if (e && m.type == pr::be::kErrorResponse && !s.opaque && data_free(e->sqlstate)) return false;
  const std::string why = rule != nullptr ? "it reads " + name_of(s.anywhere, *rule)
                                          : std::string("what it reads is out of pgwarden's sight");
  out_.clear();
  pr::append_error(
      out_, e ? e->severity : "ERROR", e ? e->sqlstate : "XX000",
      "(message withheld by pgwarden: " + why + ", masked by profile \"" + p.name + "\")", m.type);
  replace(m);
  return true;
}

}  // namespace pgwarden::core
