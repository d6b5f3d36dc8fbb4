#include "core/stages/policy_stage.h"
#include "protocol/messages.h"

#include <cstring>
#include <iterator>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/log.h"
#include "core/stages/masking_stage.h"
#include "policy/role_guard.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
using policy::Action;

namespace {

// What runs a statement stored before: EXECUTE, FETCH (and DECLARE, PREPARE), CALL.
constexpr policy::ClassSet kStored = policy::bit(policy::StatementClass::Prepare) |
                                     policy::bit(policy::StatementClass::Cursor) |
                                     policy::bit(policy::StatementClass::Call);

// Whether one of may_redefine_statements' words starts at `i` (ASCII letters in any case).
bool redefining_word_at(std::string_view s, std::size_t i) {
  static constexpr std::string_view kWords[] = {"deallocate", "prepare", "discard", "execute"};
  for (const std::string_view w : kWords) {
    if (i + w.size() > s.size()) continue;
    std::size_t k = 0;
    while (k < w.size() && (s[i + k] | 0x20) == w[k]) ++k;
    if (k == w.size()) return true;
  }
  return false;
}

#if defined(__SSE2__)
// Whether a word starts at one of the 16 positions from `at`: `a` holds their bytes and `b` the
// bytes one further (a word's first two letters, "de", "di", "pr" or "ex", in any case, make a
// candidate; only candidates are compared whole).
bool redefining_candidates(const char* a, const char* b, std::size_t at, std::string_view s) {
  const __m128i case_bit = _mm_set1_epi8(0x20);
  const __m128i x = _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)), case_bit);
  const __m128i y = _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), case_bit);
  auto is = [](__m128i v, char c) { return _mm_cmpeq_epi8(v, _mm_set1_epi8(c)); };
  const __m128i d = _mm_and_si128(is(x, 'd'), _mm_or_si128(is(y, 'e'), is(y, 'i')));
  const __m128i p = _mm_and_si128(is(x, 'p'), is(y, 'r'));
  const __m128i e = _mm_and_si128(is(x, 'e'), is(y, 'x'));
  for (auto m = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(d, _mm_or_si128(p, e))));
       m != 0; m &= m - 1) {
    if (redefining_word_at(s, at + static_cast<std::size_t>(__builtin_ctz(m)))) return true;
  }
  return false;
}
#endif

}  // namespace

// One pass: 16 positions at a time are checked for a word's first two letters ("de", "di", "pr",
// "ex", in any case); only those are compared whole.
bool PolicyStage::may_redefine_statements(std::string_view sql) {
  const std::size_t n = sql.size();
  std::size_t i = 0;
#if defined(__SSE2__)
  for (; i + 17 <= n; i += 16) {
    if (redefining_candidates(sql.data() + i, sql.data() + i + 1, i, sql)) return true;
  }
  if (i < n) {
    // The last positions: the same test on a copy padded with NUL bytes (never a candidate).
    alignas(16) char tail[32] = {};
    std::memcpy(tail, sql.data() + i, n - i);
    if (redefining_candidates(tail, tail + 1, i, sql)) return true;
  }
  return false;
#else
  for (; i < n; ++i) {
    if (redefining_word_at(sql, i)) return true;
  }
  return false;
#endif
}

// Sixteen bytes at a time (the last block overlapping the one before), or eight: whether any has
// its high bit set.
bool PolicyStage::has_non_ascii(std::string_view text) noexcept {
#if defined(__SSE2__)
  if (text.size() >= 16) {
    const auto block = [&text](std::size_t at) {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(text.data() + at));
    };
    __m128i any = block(text.size() - 16);
    for (std::size_t i = 0; i + 16 < text.size(); i += 16) any = _mm_or_si128(any, block(i));
    return _mm_movemask_epi8(any) != 0;
  }
#endif
  std::uint64_t any = 0;
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, text.data() + i, 8);
    any |= w;
  }
  for (; i < text.size(); ++i) any |= static_cast<unsigned char>(text[i]);
  return (any & 0x8080808080808080ull) != 0;
}

const policy::Rule* PolicyStage::rule() {
  const policy::Policy* pol = host_.core().policy;
  if (pol == nullptr) return nullptr;
  if (rule_policy_ != pol->id()) {
    if (rule_policy_ != 0) reloaded_ = true;
    const Caller& c = host_.caller();
    rule_ = pol->match(c.who());
    rule_policy_ = pol->id();
  }
  return rule_;
}

// The server converts a statement from the client encoding before it lexes it. In the client-only
// encodings where a character's second byte can be an ASCII byte (a backslash among them), the
// server's reading of a text with non-ASCII bytes can differ from the classifier's: such texts are
// refused while that encoding is in force. While requests are in flight the encoding can change
// under the text (SET client_encoding ahead of it in the same pipeline, or a function), so such a
// text waits until they are answered, or is refused when they cannot be answered before it
// (no Sync since). (standard_conforming_strings needs no such care: texts with a backslash are
// judged under both readings.)
Verdict PolicyStage::lexing_hazard(std::string_view text, std::string& why) const {
  if (!has_non_ascii(text)) return Verdict::Forward;
  const pr::PipelineModel& model = host_.model();
  if (!model.settled()) {
    if (model.answers_due()) return Verdict::Defer;
    why =
        "pgwarden: a statement with non-ASCII characters cannot be judged behind unsynced "
        "statements that may change client_encoding; send Sync first";
    return Verdict::Refuse;
  }
  static constexpr std::string_view kUnsafe[] = {"SJIS", "SHIFT_JIS_2004", "BIG5", "GBK",
                                                 "UHC",  "GB18030",        "JOHAB"};
  for (const std::string_view e : kUnsafe) {
    if (model.client_encoding() == e) {
      why = "pgwarden: statements with non-ASCII characters are refused while client_encoding is " +
            std::string(e) + " (use UTF8)";
      return Verdict::Refuse;
    }
  }
  return Verdict::Forward;
}

void PolicyStage::judge_text(FrontendMessage& m, std::string_view text) {
  const policy::Policy& pol = *host_.core().policy;
  policy::PolicyEngine& engine = *host_.core().engine;
  std::string hazard;
  switch (lexing_hazard(text, hazard)) {
    case Verdict::Defer:
      m.verdict = Verdict::Defer;
      return;
    case Verdict::Refuse:
      decision_ = policy::Decision{};
      decision_.action = Action::Deny;
      decision_.reason = hazard;
      m.decision = &decision_;
      m.refuse(pr::sqlstate::kInsufficientPrivilege, std::move(hazard));
      return;
    default:
      break;
  }
  decision_ = engine.judge(pol, rule(), text);
  if (text.data() == m.view.text.data() && text.size() == m.view.text.size()) {
    m.judged = engine.serial();
  }
  if (decision_.rule == nullptr && masking_ != nullptr && masking_->needs_classes()) {
    decision_.classes = engine.classes_of(pol, text);
  }
  m.decision = &decision_;
  if (decision_.action == Action::Deny) {
    m.refuse(pr::sqlstate::kInsufficientPrivilege, policy::refusal_message(decision_));
  }
}

void PolicyStage::judge_bind(FrontendMessage& m) {
  (void)rule();  // notices a reload
  const auto it = named_.find(pr::name_key(m.view.statement));
  if (it == named_.end()) {
    // Prepared with SQL PREPARE (judged then) or unknown: after a reload it cannot be judged
    // again under the new rules.
    if (reloaded_ && !m.view.statement.empty()) {
      m.refuse(pr::sqlstate::kInsufficientPrivilege,
               "pgwarden: prepared statement \"" + std::string(pr::name_key(m.view.statement)) +
                   "\" cannot be judged again under the reloaded policy; prepare it again");
    }
    return;
  }
  Named& n = it->second;
  if (!n.refusal.empty()) {
    m.refuse(pr::sqlstate::kInsufficientPrivilege, n.refusal);
    return;
  }
  const std::uint64_t now = host_.core().policy->id();
  if (n.policy == now) return;
  if (!n.kept) {
    m.refuse(pr::sqlstate::kInsufficientPrivilege,
             "pgwarden: prepared statement \"" + std::string(pr::name_key(m.view.statement)) +
                 "\" is too large to be judged again under the reloaded policy; prepare it "
                 "again");
    return;
  }
  judge_text(m, n.text);
  if (m.verdict == Verdict::Refuse) {
    n.refusal = m.message;
  } else if (decision_.action == Action::Allow) {
    n.policy = now;  // a held Bind is judged again the next time
  }
  // Whether it moves the path, under the rules now in force.
  n.moves_path_user = checks_search_path() && moves_path(host_.core().engine->parsed_classes_of(
                                                  *host_.core().policy, n.text));
}

// A Bind of a statement that moves the path makes its portal one whose Execute does, until no
// portal is left (a rebind or Close may fail upstream, so nothing is forgotten before). A
// statement pgwarden does not know (SQL PREPARE, or names forgotten after DEALLOCATE, PREPARE or
// DISCARD) may move it.
void PolicyStage::bind_portal(const FrontendMessage& m) {
  const auto it = named_.find(pr::name_key(m.view.statement));
  bool moves = it != named_.end() ? it->second.moves_path_user : checks_search_path();
  if (!moves && path_in_block_ && it != named_.end()) {
    // Classified before the check ran inside this block: it may end the block (COMMIT,
    // ROLLBACK TO SAVEPOINT), and with it the block's SET LOCAL values.
    const Named& n = it->second;
    moves =
        !n.kept || moves_path(host_.core().engine->parsed_classes_of(*host_.core().policy, n.text));
  }
  const std::string_view portal = pr::name_key(m.view.name);
  if (!moves || every_portal_moves_ || moving_portal(portal)) return;
  if (moving_portals_.size() >= kMaxMovingPortals) {
    every_portal_moves_ = true;  // too many to follow
    return;
  }
  moving_portals_.emplace_back(portal);
}

bool PolicyStage::moving_portal(std::string_view portal) const noexcept {
  const std::string_view key = pr::name_key(portal);
  for (const std::string& p : moving_portals_) {
    if (p == key) return true;
  }
  return false;
}

// Idle with nothing in flight: no portal is left, and none of them moves the path.
void PolicyStage::forget_portals() {
  const pr::PipelineModel& model = host_.model();
  if (model.tx_status() != 'I' || !model.settled() || !model.answers_due()) return;
  moving_portals_.clear();
  every_portal_moves_ = false;
}

// A fast-path call is judged like the statement it amounts to: one of the large-object functions
// libpq calls by OID like SELECT (or CALL, for those that write) of that function; any other OID
// names a function pgwarden cannot tell, so it counts as a call of a dangerous function.
void PolicyStage::judge_function_call(FrontendMessage& m) {
  if (const policy::FastPathFunction* f = policy::fast_path_function(m.view.function)) {
    judge_text(m,
               std::string(f->writes ? "CALL pg_catalog." : "SELECT pg_catalog.") + f->name + "()");
    return;
  }
  const policy::Rule* r = rule();
  constexpr policy::ClassSet kCall = policy::bit(policy::StatementClass::Call) |
                                     policy::bit(policy::StatementClass::DangerousFunction);
  // Under a rule that forbids whole schemas, a call by OID could be set_config('role', ...) or
  // set_config('search_path', ...): nothing would follow it.
  if (r == nullptr || ((r->denied() & kCall) == 0 && !checks_search_path())) return;
  decision_ = policy::Decision{};
  decision_.action = Action::Deny;
  decision_.rule = r;
  decision_.classes = kCall;
  decision_.reason = "fast-path function call";
  m.decision = &decision_;
  m.refuse(pr::sqlstate::kInsufficientPrivilege,
           "pgwarden: fast-path function calls are denied by policy rule \"" + r->name +
               "\" (function " + std::to_string(m.view.function) +
               " is named by OID only, so it counts as a dangerous_function)");
}

bool PolicyStage::checks_search_path() {
  const policy::Rule* r = rule();
  if (r == nullptr) return false;
  for (const std::string& f : r->forbidden_tables) {
    if (f.size() > 2 && f.compare(f.size() - 2, 2, ".*") == 0) return true;
  }
  return false;
}

// What runs, prepares or describes a statement waits for the check: the server resolves a Parse's
// names (and a statement's Describe's, planning it again) under the path of the moment. Sync,
// Flush, Close and a portal's Describe (planned already) go on.
bool PolicyStage::waits_for_check(const pr::FrontendView& v) noexcept {
  return v.query /* Query or Parse */ || v.type == pr::fe::kBind ||
         (v.type == pr::fe::kDescribe && v.target == 'S') || v.type == pr::fe::kExecute ||
         v.type == pr::fe::kFunctionCall;
}

// Before the first statement under such a rule (and again after a reload), the session's
// search_path is read with a query of pgwarden's own; statements wait until it is answered. The
// query is sent when nothing is in flight, so that the transaction state is known: in a failed
// transaction it would fail itself, and there nothing runs but a transaction's end (or ROLLBACK
// TO SAVEPOINT, after which everything runs again): checked once that has run.
bool PolicyStage::search_path_check(FrontendMessage& m) {
  const std::uint64_t id = host_.core().policy->id();
  // A check not yet sent is decided again under a new policy (which may need none).
  if (path_ != PathCheck::Pending && path_policy_ != id) {
    path_policy_ = id;
    const bool checked = path_rule_;
    path_rule_ = checks_search_path();
    if (!path_rule_) roles_sql_.clear();  // role statements meanwhile go unfollowed
    path_ = path_rule_ ? PathCheck::Due : PathCheck::None;
    if (path_rule_ && !checked && reloaded_) {
      // What was prepared, declared or bound before was never classified: any of it may move
      // the path when it runs.
      stored_move_ = true;
      every_portal_moves_ = true;
    }
  }
  if (path_in_block_ && path_ == PathCheck::None && host_.model().tx_status() == 'I') {
    // Checked inside a transaction block, whose SET LOCAL values (and role) ended with it.
    path_in_block_ = false;
    path_ = PathCheck::Due;
  }
  if (path_ == PathCheck::Rearm) {
    // A portal that moves the path was executed: the Sync, or the next statement (an Execute
    // too), makes the check due (in the batch, that statement is refused below).
    if (m.view.type == pr::fe::kSync) {
      path_ = PathCheck::Due;
      return false;
    }
    if (!waits_for_check(m.view)) return false;
    path_ = PathCheck::Due;
  }
  if (path_ == PathCheck::Pending) {
    m.verdict = Verdict::Defer;
    return true;
  }
  if (path_ != PathCheck::Due) return false;
  const pr::FrontendView& v = m.view;
  if (!waits_for_check(v)) return false;
  const pr::PipelineModel& model = host_.model();
  if (model.tx_status() == 'E' && !model.runs_in_flight()) {
    // Still in the failed transaction: what runs next fails, or ends it (or rolls back to a
    // savepoint); what follows it waits below until its answer says which. A Query's later
    // statements would run at once: only transaction control may share one.
    if (v.type != pr::fe::kQuery) return false;
    const policy::ClassSet classes =
        host_.core().engine->parsed_classes_of(*host_.core().policy, v.text);
    if (classes != 0 && (classes & ~policy::bit(policy::StatementClass::Transaction)) == 0) {
      return false;
    }
    m.refuse(pr::sqlstate::kInsufficientPrivilege,
             "pgwarden: the policy changed, and this session's search_path must be checked "
             "against its forbidden schemas before anything else runs; end the failed "
             "transaction (ROLLBACK) in a statement of its own first");
    return true;
  }
  // The check runs as a request of its own: not inside an unsynced extended-protocol batch,
  // where the server may be skipping to Sync (it would never be answered) or would run it among
  // the client's messages.
  if (!model.settled() || !model.answers_due()) {
    if (model.answers_due() && !model.input_barrier()) {
      m.verdict = Verdict::Defer;  // until what is in flight is answered
      return true;
    }
    m.refuse(pr::sqlstate::kInsufficientPrivilege,
             "pgwarden: the session's search_path must be checked against the policy's forbidden "
             "schemas first; send Sync and try again");
    return true;
  }
  // SHOW takes no snapshot (a SELECT would: in REPEATABLE READ it would fix the client's
  // transaction snapshot, and SET TRANSACTION would then fail), and the batch leaves the
  // client's unnamed statement and portal alone. Which roles named like a forbidden schema the
  // session may become is read with a SELECT: outside a transaction block, and inside one when
  // what was read may be out of date (a role statement ran, whose snapshot is taken already, or
  // the policy forbids other schemas now; fail closed, at the cost of the snapshot).
  std::string roles = forbidden_roles_query();
  if (!roles.empty() && (model.tx_status() == 'I' || roles_stale_ || roles != roles_sql_)) {
    host_.send_own_statements(
        kOwnerPolicy, {"SHOW search_path", "SHOW role", "SHOW session_authorization", roles});
    path_sent_ = 4;
    members_.clear();
    roles_sql_ = std::move(roles);
    roles_stale_ = false;
  } else {
    host_.send_own_statements(kOwnerPolicy,
                              {"SHOW search_path", "SHOW role", "SHOW session_authorization"});
    path_sent_ = 3;
  }
  path_ = PathCheck::Pending;
  for (std::string& value : path_values_) value.clear();
  path_rows_ = 0;
  path_done_ = 0;
  path_failed_ = false;
  m.verdict = Verdict::Defer;
  return true;
}

// The roles named like the rule's forbidden schemas that the session may become: those the
// session user is a member of, and those the user that logged in is (a superuser is a member of
// every role, and may make any role the session user). Names go as hex, whatever the client
// encoding and string syntax in force; everything it calls is pg_catalog's.
std::string PolicyStage::forbidden_roles_query() {
  const auto text = [](std::string& out, std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out.append("pg_catalog.convert_from(pg_catalog.decode('");
    for (const char c : s) {
      out.push_back(kHex[static_cast<unsigned char>(c) >> 4]);
      out.push_back(kHex[static_cast<unsigned char>(c) & 15]);
    }
    out.append("', 'hex'), 'UTF8')");
  };
  std::string names;
  for (const std::string& f : rule()->forbidden_tables) {
    if (f.size() <= 2 || f.compare(f.size() - 2, 2, ".*") != 0) continue;
    if (!names.empty()) names.append(", ");
    text(names, std::string_view(f).substr(0, f.size() - 2));
  }
  if (names.empty()) return names;
  std::string sql =
      "SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY "
      "(ARRAY[" +
      names + "]::pg_catalog.name[]) AND (pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')";
  if (const std::string& login = host_.caller().role; !login.empty()) {
    sql.append(" OR pg_catalog.pg_has_role(");
    text(sql, login);
    sql.append("::pg_catalog.name, r.oid, 'MEMBER')");
  }
  return sql.append(")");
}

// Whether running a statement of `classes` may leave the search_path reaching schemas nobody
// judged from a text: a role change ("$user" names the new role's schema), a path set to its
// default or naming "$user" (kPathMoves), or, after a check inside a transaction block, the
// block's end or a rollback to a savepoint (SET LOCAL values end with them); EXECUTE, FETCH or
// CALL once the session stored such a statement (PREPARE, DECLARE).
bool PolicyStage::moves_path(policy::ClassSet classes) const noexcept {
  namespace pc = policy;
  return (classes & (pc::bit(pc::StatementClass::RoleChange) | pc::kPathMoves)) != 0 ||
         (path_in_block_ && (classes & pc::bit(pc::StatementClass::Transaction)) != 0) ||
         (stored_move_ && (classes & kStored) != 0);
}

// The check runs again after a statement that moves the path (moves_path), before the next one.
// Inside one Query, statements after it would run first, each resolving unqualified names anew:
// a Query of several statements that holds anything but role changes, settings and transaction
// control with it is refused (an EXECUTE after it would plan its statement again, anew). A DO block
// or a routine that moves the path runs its own statements after it unchecked: refused, in a Parse
// too (one plain statement resolves its names before it runs, so a Parse may hold anything else).
void PolicyStage::follow_path_user(FrontendMessage& m, std::string_view text) {
  namespace pc = policy;
  const pc::ClassSet classes = host_.core().engine->parsed_classes_of(*host_.core().policy, text);
  if (!moves_path(classes)) return;
  constexpr pc::ClassSet kOnItsOwn = pc::bit(pc::StatementClass::RoleChange) |
                                     pc::bit(pc::StatementClass::Set) |
                                     pc::bit(pc::StatementClass::Transaction) | pc::kPathMoves;
  constexpr pc::ClassSet kRoutines = pc::bit(pc::StatementClass::DoBlock) |
                                     pc::bit(pc::StatementClass::Function) |
                                     pc::bit(pc::StatementClass::Call);
  const bool own_move = (classes & (pc::bit(pc::StatementClass::RoleChange) | pc::kPathMoves)) != 0;
  constexpr pc::ClassSet kDdl = pc::bit(pc::StatementClass::Ddl);
  // A role statement (CREATE/ALTER ROLE, GRANT role), or what may run one stored before: the
  // roles the session may become are read again, inside a transaction block too.
  if (((classes & pc::kPathMoves) != 0 && (classes & kDdl) != 0) ||
      (stored_move_ && (classes & kStored) != 0)) {
    roles_stale_ = true;
  }
  // Code stored to run later (a view, a column default, a rule, a function's SET clause) that
  // changes the role or the path (set_config) would run unseen: refused, as in a routine.
  if ((m.view.type == pr::fe::kQuery && (classes & pc::kMultiStatement) != 0 &&
       (classes & ~(kOnItsOwn | pc::kMultiStatement)) != 0) ||
      (own_move && (classes & kRoutines) != 0) ||
      ((classes & kDdl) != 0 && (classes & pc::bit(pc::StatementClass::RoleChange)) != 0)) {
    m.refuse(pr::sqlstate::kInsufficientPrivilege,
             "pgwarden: under a policy rule that forbids whole schemas, a role change, a "
             "search_path set to its default or naming \"$user\", RESET ALL or DISCARD ALL (or, "
             "after a reload inside a transaction block, its end) goes in a Query of its own, and "
             "never in a DO block, routine or stored object (view, default, rule, set_config "
             "anywhere in DDL): the schemas the search_path then reaches are checked before the "
             "next statement runs");
    return;
  }
  // A stored statement that moves the path (PREPARE, DECLARE) moves it again when it runs.
  if (own_move && (classes & (pc::bit(pc::StatementClass::Prepare) |
                              pc::bit(pc::StatementClass::Cursor))) != 0) {
    stored_move_ = true;
    // A cursor is a portal: the protocol's Execute can run it too.
    if ((classes & pc::bit(pc::StatementClass::Cursor)) != 0) every_portal_moves_ = true;
  }
  moves_path_user_ = true;
}

void PolicyStage::on_backend(BackendMessage& m) {
  const pr::Request* r = m.request();
  if (r == nullptr || r->origin != pr::Origin::Gateway || r->owner != kOwnerPolicy) return;
  m.verdict = Verdict::Drop;
  if (m.type == pr::be::kDataRow) {
    // One text column: a SHOW's value (one row each, in the order sent), or a role's name.
    std::string_view p(reinterpret_cast<const char*>(m.whole.data()), m.whole.size());
    std::uint32_t len = 0;
    if (p.size() < 11 || path_done_ >= path_sent_) {
      path_failed_ = true;
      return;
    }
    for (int i = 7; i < 11; ++i) len = (len << 8) | static_cast<unsigned char>(p[i]);
    p.remove_prefix(11);
    if (len > p.size()) len = 0, path_failed_ = true;
    const std::string_view value = p.substr(0, len);
    if (path_done_ < std::size(path_values_)) {
      if ((path_rows_ & (1u << path_done_)) != 0) path_failed_ = true;
      path_rows_ |= 1u << path_done_;
      path_values_[path_done_].assign(value);
    } else if (members_.size() >= kMaxMembers) {
      path_failed_ = true;
    } else {
      members_.emplace_back(value);
    }
    return;
  }
  if (m.type == pr::be::kCommandComplete) {
    ++path_done_;
    return;
  }
  if (m.type == pr::be::kErrorResponse) {
    path_failed_ = true;  // unreadable: taken as naming a forbidden schema below
    return;
  }
  if (m.type != pr::be::kReadyForQuery) return;
  path_ = PathCheck::None;
  path_in_block_ = m.whole.size() > 5 && static_cast<char>(m.whole[5]) != 'I';

  const policy::Policy* pol = host_.core().policy;
  if (pol == nullptr) return;
  if (path_done_ != path_sent_ || path_rows_ != 7u) path_failed_ = true;
  // "$user" in the path is the current user's schema: the role SET ROLE chose, if any, else
  // the session user (no role can be named "none").
  const std::string& user = path_values_[1] != "none" ? path_values_[1] : path_values_[2];
  const auto quoted = [](std::string& out, std::string_view name) {
    out.append(", \"");
    for (const char c : name) out.append(c == '"' ? 2 : 1, c);
    out.push_back('"');
  };
  std::string path = path_values_[0];
  bool has_user = false;
  for (const std::string& schema : policy::split_search_path(path_values_[0])) {
    has_user = has_user || schema == "$user";
  }
  if (has_user) quoted(path, user);
  std::string schema =
      path_failed_ ? std::string("(unknown)") : pol->forbidden_schema_in(path, rule());
  if (schema.empty() && has_user && !members_.empty()) {
    // Code the server runs can make any role the session may become the role, where no
    // statement shows it: "$user" may name each one's schema. (The query asked only for roles
    // named like a forbidden schema, compared by the server whatever the client encoding.)
    m.verdict = Verdict::Fail;
    m.sqlstate = pr::sqlstate::kInsufficientPrivilege;
    m.message = "pgwarden: this session's search_path holds \"$user\", and it may become role \"";
    m.message.append(members_.front())
        .append(
            "\" (a member of it, or a superuser), whose schema's tables the policy forbids; a "
            "function, view or default could make that the role unseen and unqualified names "
            "would reach them, so the session ends (set a search_path without \"$user\", e.g. "
            "ALTER ROLE ... SET search_path = public)");
    path_refusal_ = m.message;
    return;
  }
  if (schema.empty()) return;
  m.verdict = Verdict::Fail;
  m.sqlstate = pr::sqlstate::kInsufficientPrivilege;
  m.message =
      "pgwarden: this session's search_path (the role's or database's default) reaches schema \"";
  m.message.append(schema).append(
      "\", whose tables the policy forbids; unqualified names would reach them, so the session "
      "ends (ask the DBA to change the default)");
  path_refusal_ = m.message;  // and nothing the client sent meanwhile goes upstream
}

void PolicyStage::on_frontend(FrontendMessage& m) {
  if (host_.core().policy == nullptr || m.verdict != Verdict::Forward) return;
  if (!path_refusal_.empty()) {
    m.verdict = Verdict::Fail;
    m.sqlstate = pr::sqlstate::kInsufficientPrivilege;
    m.message = path_refusal_;
    return;
  }
  if (search_path_pending(m)) return;
  if (every_portal_moves_ || !moving_portals_.empty()) forget_portals();
  switch (m.view.type) {
    case pr::fe::kQuery:
    case pr::fe::kParse:
      if (m.view.type == pr::fe::kParse && !m.view.name.empty() &&
          named_.size() >= kMaxStatements && named_.count(pr::name_key(m.view.name)) == 0) {
        m.refuse("54000", "pgwarden: too many prepared statements in this session (" +
                              std::to_string(kMaxStatements) + "); close some first");
        return;
      }
      judge_text(m, m.view.text);
      moves_path_user_ = false;
      if (m.verdict == Verdict::Forward && path_policy_ == host_.core().policy->id() &&
          checks_search_path()) {
        follow_path_user(m, m.view.text);
      }
      return;
    case pr::fe::kBind:
      judge_bind(m);
      if (m.verdict == Verdict::Forward) bind_portal(m);
      return;
    case pr::fe::kExecute:
      // (Seen while portals that move the path may be open: gates_input.)
      if (path_ == PathCheck::None && (every_portal_moves_ || moving_portal(m.view.name))) {
        path_ = PathCheck::Rearm;
        roles_stale_ = true;  // it may be a role statement bound before a check
      }
      return;
    case pr::fe::kFunctionCall:
      judge_function_call(m);
      return;
    default:
      return;
  }
}

void PolicyStage::on_frontend_done(FrontendMessage& m, pr::Request* r) {
  const policy::Policy* pol = host_.core().policy;
  if (pol == nullptr) return;
  if (m.verdict == Verdict::Hold) {
    held_moves_path_user_ = moves_path_user_;  // decided when the approval is
    moves_path_user_ = false;
  }
  const pr::FrontendView& v = m.view;
  if (v.query && m.verdict != Verdict::Refuse && !named_.empty() &&
      may_redefine_statements(v.text)) {
    // SQL DEALLOCATE / PREPARE / DISCARD, or dynamic SQL that could run them, may give a name
    // another statement: what pgwarden kept under that name no longer says what it is.
    named_.clear();
    named_bytes_ = 0;
  }
  if (v.type == pr::fe::kQuery && m.verdict != Verdict::Refuse) {
    // A simple Query replaces the unnamed statement.
    if (!named_.empty()) named_.erase(std::string());
    if (moves_path_user_ && m.verdict == Verdict::Forward && path_ == PathCheck::None) {
      path_ = PathCheck::Due;
    }
    moves_path_user_ = false;
    return;
  }
  if (v.type == pr::fe::kClose && v.target == 'S' && m.verdict != Verdict::Refuse) {
    const auto it = named_.find(pr::name_key(v.name));
    if (it != named_.end()) {
      named_bytes_ -= it->second.text.size();
      named_.erase(it);
    }
    return;
  }
  if (v.type != pr::fe::kParse || m.verdict == Verdict::Hold) return;
  const std::string_view name = pr::name_key(v.name);
  auto at = named_.find(name);
  if (at == named_.end()) at = named_.emplace(std::string(name), Named{}).first;
  Named& n = at->second;
  named_bytes_ -= n.text.size();
  n.kept = named_bytes_ + v.text.size() <= kMaxTextBytes;
  n.text.assign(n.kept ? v.text : std::string_view());
  named_bytes_ += n.text.size();
  n.policy = pol->id();
  n.refusal = m.verdict == Verdict::Refuse ? m.message : std::string();
  n.moves_path_user = moves_path_user_;
  // SQL EXECUTE runs a protocol-prepared statement too.
  if (moves_path_user_ && !name.empty()) stored_move_ = true;
  moves_path_user_ = false;
  if (r != nullptr && r->origin == pr::Origin::Client) r->tag_text = name;
}

// A Parse the server did not run (it failed, or was skipped after an earlier error) created
// nothing: forget its text, whatever the name means to the server now.
void PolicyStage::on_retired(const pr::Request& r) {
  if (r.kind != pr::RequestKind::Parse || r.origin != pr::Origin::Client) return;
  if (!r.failed && r.state != pr::RequestState::Skipped) return;
  const auto it = named_.find(r.tag_text);
  if (it == named_.end() || !it->second.refusal.empty()) return;
  named_bytes_ -= it->second.text.size();
  named_.erase(it);
}

}  // namespace pgwarden::core
