#include "core/stages/pooler_stage.h"

#include <sys/random.h>

#include <cstdio>

#include "protocol/message_types.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;

namespace {

// The statement a Bind or Describe('S') runs against; false for anything else.
bool statement_used(const pr::FrontendView& v, std::string_view& name) {
  if (v.type == pr::fe::kBind) {
    name = v.statement;
    return true;
  }
  if (v.type == pr::fe::kDescribe && v.target == 'S') {
    name = v.name;
    return true;
  }
  return false;
}

}  // namespace

PoolerStage::PoolerStage(StageHost& host) : host_(host) {
  std::uint64_t r[2] = {0, 0};
  if (::getrandom(r, sizeof r, 0) != sizeof r) r[0] = host.session_id() * 0x9E3779B97F4A7C15ull;
  char name[64];
  std::snprintf(name, sizeof name, "pgwarden none %016llx%016llx",
                static_cast<unsigned long long>(r[0]), static_cast<unsigned long long>(r[1]));
  nobody_ = name;
}

void PoolerStage::refuse_missing(FrontendMessage& m, std::string_view name) const {
  m.refuse(pr::sqlstate::kInvalidSqlStatementName,
           name.empty()
               ? std::string("unnamed prepared statement does not exist")
               : "prepared statement \"" + std::string(pr::name_key(name)) + "\" does not exist");
}

void PoolerStage::on_frontend(FrontendMessage& m) {
  if (m.verdict != Verdict::Forward) return;
  const pr::FrontendView& v = m.view;
  if (v.type == pr::fe::kParse) {
    if (v.name.empty()) return;  // the unnamed statement is bounded by --max-statement-size
    const std::string_view key = pr::name_key(v.name);
    if (const auto it = named_.find(key); it != named_.end()) {
      if (!it->second.confirmed && host_.model().answers_due()) {
        // Its Parse, in an earlier batch, may yet fail and leave the name free: wait and see.
        m.verdict = Verdict::Defer;
        return;
      }
      m.refuse(pr::sqlstate::kDuplicatePreparedStatement,
               "prepared statement \"" + std::string(key) + "\" already exists");
      return;
    }
    if (named_.size() >= kMaxStatements ||
        bytes_ + v.text.size() + v.param_types.size() > kMaxBytes) {
      m.refuse(pr::sqlstate::kProgramLimitExceeded,
               "pgwarden: this session's prepared statements would exceed what pgwarden keeps "
               "for them behind a transaction-mode pooler (" +
                   std::to_string(kMaxStatements) + " statements, " +
                   std::to_string(kMaxBytes >> 20) + " MiB of text); close some first");
    }
    return;
  }
  // A named portal: only one the client bound in this transaction (the server may hold other
  // clients' WITH HOLD cursors). A Close of another is answered without touching it (rewrite).
  const bool portal_use =
      v.type == pr::fe::kExecute || (v.type == pr::fe::kDescribe && v.target == 'P');
  if (portal_use && !v.name.empty() && portals_.find(pr::name_key(v.name)) == portals_.end()) {
    m.refuse(pr::sqlstate::kInvalidCursorName,
             "portal \"" + std::string(pr::name_key(v.name)) + "\" does not exist");
    return;
  }
  if (v.type == pr::fe::kBind && !v.name.empty() && portals_.size() >= kMaxPortals &&
      portals_.find(pr::name_key(v.name)) == portals_.end()) {
    m.refuse(pr::sqlstate::kProgramLimitExceeded,
             "pgwarden: more than " + std::to_string(kMaxPortals) +
                 " named portals in one transaction behind a transaction-mode pooler");
    return;
  }
  std::string_view name;
  if (!statement_used(v, name)) return;
  if (name.empty()) {
    if (holds_ != Holds::Client && !has_unnamed_) refuse_missing(m, name);
  } else if (named_.find(pr::name_key(name)) == named_.end()) {
    // Never sent on by name: on a pooled server the name could be another client's.
    refuse_missing(m, name);
  }
}

void PoolerStage::keep(Kept& k, const pr::FrontendView& v) {
  k.text.assign(v.text);
  k.types.assign(reinterpret_cast<const char*>(v.param_types.data()), v.param_types.size());
  k.created = host_.model().next_id();
  k.confirmed = false;
}

void PoolerStage::inject(const Kept& k) {
  pr::append_parse_typed(
      out_, "", k.text,
      pr::Bytes(reinterpret_cast<const std::byte*>(k.types.data()), k.types.size()));
  prelude_ = true;
}

void PoolerStage::forget(std::string_view key) {
  const auto it = named_.find(key);
  if (it == named_.end()) return;
  bytes_ -= it->second.size();
  named_.erase(it);
  if (holds_ == Holds::Named && holds_name_ == key) holds_ = Holds::Unknown;
}

bool PoolerStage::rewrite_use(const pr::FrontendView& v, std::string_view name) {
  std::string_view target = "";  // what the rewritten message names
  if (name.empty()) {
    if (holds_ == Holds::Client) return false;  // the client's own, parsed in this batch
    if (has_unnamed_) {
      inject(unnamed_);
      holds_ = Holds::Client;
    } else {
      target = nobody_;  // fails upstream (an approval outlived the Parse): nothing else runs
    }
  } else {
    const std::string_view key = pr::name_key(name);
    const auto it = named_.find(key);
    if (it == named_.end()) {
      target = nobody_;
    } else if (holds_ != Holds::Named || holds_name_ != key) {
      inject(it->second);
      holds_ = Holds::Named;
      holds_name_.assign(key);
    }
  }
  if (v.type == pr::fe::kBind) {
    pr::append_bind_of(out_, v, target);
  } else {
    pr::append_describe(out_, 'S', target);
  }
  return true;
}

bool PoolerStage::rewrite(const pr::FrontendView& v) {
  out_.clear();
  prelude_ = false;
  switch (v.type) {
    case pr::fe::kSync:
      holds_ = Holds::Unknown;  // the pooler may give the next batch another server
      return false;
    case pr::fe::kQuery:
      // A simple Query drops the unnamed statement; it ends with ReadyForQuery, after which the
      // pooler may give the client another server.
      dropped_by_query_ = has_unnamed_ ? host_.model().next_id() : 0;
      has_unnamed_ = false;
      holds_ = Holds::Unknown;
      return false;
    case pr::fe::kFunctionCall:
      // It ends with ReadyForQuery too, even inside a batch: the rest of the batch may run on
      // another server (the client's unnamed statement is kept, to be parsed again).
      holds_ = Holds::Unknown;
      return false;
    case pr::fe::kParse: {
      if (v.name.empty()) {
        dropped_by_query_ = 0;
        keep(unnamed_, v);
        has_unnamed_ = true;
        holds_ = Holds::Client;
        return false;
      }
      const std::string_view key = pr::name_key(v.name);
      Kept& k = named_[std::string(key)];
      bytes_ -= k.size();
      keep(k, v);
      bytes_ += k.size();
      pr::append_parse_typed(out_, "", v.text, v.param_types);
      holds_ = Holds::Named;
      holds_name_.assign(key);
      return true;
    }
    case pr::fe::kClose:
      if (v.target == 'P') {
        if (v.name.empty()) return false;
        const auto it = portals_.find(pr::name_key(v.name));
        if (it != portals_.end()) {
          portals_.erase(it);
          return false;
        }
        // Not one of the client's: maybe another client's cursor, which stays untouched.
        pr::append_close(out_, 'P', nobody_);
        return true;
      }
      if (v.name.empty()) {
        has_unnamed_ = false;
        dropped_by_query_ = 0;
        holds_ = Holds::Unknown;  // it also drops what pgwarden's Parse of a name put there
        return false;
      }
      // Forgotten here; upstream a Close of a name nobody has answers CloseComplete and does
      // nothing ("It is not an error to issue Close against a nonexistent statement").
      forget(pr::name_key(v.name));
      pr::append_close(out_, 'S', nobody_);
      return true;
    default: {
      if (v.type == pr::fe::kBind && !v.name.empty()) {
        portals_[std::string(pr::name_key(v.name))] = host_.model().next_id();
      }
      std::string_view name;
      return statement_used(v, name) && rewrite_use(v, name);
    }
  }
}

void PoolerStage::on_retired(const pr::Request& r) {
  if (r.kind == pr::RequestKind::Query && r.origin == pr::Origin::Client &&
      r.id == dropped_by_query_) {
    // Skipped, the Query dropped nothing (postgres.c ignores all but Sync till Sync).
    if (r.state == pr::RequestState::Skipped) has_unnamed_ = true;
    dropped_by_query_ = 0;
    return;
  }
  if (r.kind != pr::RequestKind::Parse || r.origin != pr::Origin::Client) return;
  if (!r.failed && r.state != pr::RequestState::Skipped) {
    if (r.name.empty()) return;
    const auto it = named_.find(std::string_view(r.name));
    if (it != named_.end() && it->second.created == r.id) it->second.confirmed = true;
    return;
  }
  if (r.name.empty()) {
    if (has_unnamed_ && unnamed_.created == r.id) has_unnamed_ = false;
    return;
  }
  const auto it = named_.find(std::string_view(r.name));
  if (it != named_.end() && it->second.created == r.id) forget(r.name);
}

void PoolerStage::on_backend(BackendMessage& m) {
  if (m.type == pr::be::kReadyForQuery && m.whole.size() >= 6 &&
      static_cast<char>(m.whole[5]) == 'I') {
    // Out of a transaction: the portals bound before this point are gone, and the pooler may
    // give the next transaction another server.
    const std::uint64_t id = m.request() != nullptr ? m.request()->id : ~std::uint64_t{0};
    for (auto it = portals_.begin(); it != portals_.end();) {
      it = it->second < id ? portals_.erase(it) : std::next(it);
    }
    return;
  }
  if (m.type != pr::be::kCommandComplete || !m.from_client_request() || m.whole.size() < 6) return;
  std::string_view tag(reinterpret_cast<const char*>(m.whole.data()) + 5, m.whole.size() - 5);
  tag = tag.substr(0, tag.find('\0'));
  if (tag != "DEALLOCATE ALL" && tag != "DISCARD ALL") return;
  // The names made before the statement are gone; those parsed after it (pipelined) are not.
  const std::uint64_t id = m.request()->id;
  for (auto it = named_.begin(); it != named_.end();) {
    if (it->second.created >= id) {
      ++it;
      continue;
    }
    bytes_ -= it->second.size();
    if (holds_ == Holds::Named && holds_name_ == it->first) holds_ = Holds::Unknown;
    it = named_.erase(it);
  }
}

}  // namespace pgwarden::core
