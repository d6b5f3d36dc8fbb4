// The stage interface: each per-statement concern (role guard, policy, approvals, masking,
// recording) is a Stage with its own state, run by the Session over the one pipeline model, in
// the spirit of Envoy's network filters. For every ready-phase frontend message the chain runs in
// order (role guard -> policy -> approvals -> recording) and ends in a verdict; for every backend
// message (masking -> policy -> recording) likewise. Every stage in a chain sees every message
// its interest() has; a stage after a refusing or holding one sees that verdict and acts on it
// (the recording records it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "core/services.h"
#include "protocol/frontend.h"
#include "protocol/message_types.h"
#include "protocol/pipeline.h"

namespace pgwarden::policy {
struct Decision;
}

namespace pgwarden::core {

enum class Verdict : std::uint8_t {
  Forward,  // as it is, from the buffer it arrived in
  Replace,  // other bytes go in its place
  Drop,     // nothing goes on (e.g. replies to pgwarden's own requests)
  Hold,     // kept, and input paused, until the holding stage decides (approvals)
  Refuse,   // answered with an error in its place of the stream; nothing of it goes upstream
  Defer,    // not judged now: it and what follows wait until the model is settled
  Fail,     // ends the session (after the replies already due)
};

// Who the caller is, as authentication established it. Owned by the session's auth stage.
struct Caller {
  std::string identity;  // the gateway-authenticated identity, or the startup user name
  std::vector<std::string> groups;
  std::string method = "relayed to upstream";
  bool gateway = false;                     // gateway authentication (pgwarden chose the role)
  std::string user, database, application;  // as the client asked at startup
  std::string role;                         // the mapped role (gateway), or the startup user
  std::string upstream_database;
  std::string principal;  // gateway authentication: CallerIdentity::principal ("" when relayed)
  // On behalf of: the agent acting for the user (first), then whoever it acts for in turn;
  // empty when the user acts itself. And the OAuth client the token was issued to.
  std::vector<std::string> actors;
  std::vector<std::string> actor_groups;  // the policy's may_act groups of the first actor
  std::string client_id;

  // As rules and masking profiles see the caller.
  policy::Who who() const noexcept {
    return policy::Who{identity, &groups,
                       actors.empty() ? std::string_view() : std::string_view(actors.front()),
                       nullptr, &actors};
  }
};

// A whole frontend message of the ready phase on its way through the chain.
struct FrontendMessage {
  explicit FrontendMessage(const protocol::FrontendView& v) : view(v) {}
  const protocol::FrontendView& view;
  Verdict verdict = Verdict::Forward;
  std::string_view sqlstate;  // Refuse, Fail
  std::string message;        // Refuse, Fail: what the client is told
  std::string reason;  // Refuse: why, for the recording (defaults to message); granted: which grant
  bool granted = false;  // Forward of a statement the policy holds, under a JIT grant
  // The policy stage's judgement of a Query, Parse or Bind, for the stages after it.
  const policy::Decision* decision = nullptr;
  // PolicyEngine::serial() of the call that judged view.text itself (0: none did): what it
  // learnt of the text (its shape) is asked for by this number, of the same engine (the
  // worker's, core().engine: numbers of two engines say nothing of each other).
  std::uint64_t judged = 0;
  std::basic_string<std::byte> replacement;  // Replace
  void refuse(std::string_view state, std::string text) {
    verdict = Verdict::Refuse;
    sqlstate = state;
    message = std::move(text);
  }
};

// A backend message of the ready phase on its way through the chain.
struct BackendMessage {
  char type = 0;
  protocol::Bytes whole;  // empty when it was not read whole (rows nobody inspects)
  std::uint32_t size = 0;
  const protocol::PipelineModel::Event* event = nullptr;
  Verdict verdict = Verdict::Forward;
  protocol::Bytes out;        // Replace: what goes to the client instead (stage-owned storage)
  std::string_view sqlstate;  // Fail
  std::string message;
  // What the client receives (out after a Replace, else whole).
  protocol::Bytes delivered() const noexcept { return verdict == Verdict::Replace ? out : whole; }
  const protocol::Request* request() const noexcept { return event->request; }
  bool from_client_request() const noexcept {
    return event->request != nullptr && event->request->origin == protocol::Origin::Client;
  }
};

// Which messages a stage's hook acts on: a set of message type bytes (frontend or backend), or
// of request kinds (protocol::RequestKind as a byte). The session calls a hook only for what is
// in its set, so a stage pays nothing for the messages it lets pass. Bytes of 128 and over are
// always in (no message type uses them).
class TypeSet {
 public:
  static constexpr TypeSet all() noexcept { return TypeSet(~std::uint64_t{0}, ~std::uint64_t{0}); }
  constexpr TypeSet(std::initializer_list<char> types) noexcept {
    for (const char t : types) add(static_cast<unsigned char>(t));
  }
  constexpr TypeSet(std::initializer_list<protocol::RequestKind> kinds) noexcept {
    for (const protocol::RequestKind k : kinds) add(static_cast<unsigned char>(k));
  }
  constexpr bool has(char type) const noexcept {
    const auto u = static_cast<unsigned char>(type);
    return u >= 128 || ((bits_[u >> 6] >> (u & 63)) & 1) != 0;
  }
  constexpr bool has(protocol::RequestKind k) const noexcept { return has(static_cast<char>(k)); }

 private:
  constexpr TypeSet(std::uint64_t lo, std::uint64_t hi) noexcept : bits_{lo, hi} {}
  constexpr void add(unsigned char u) noexcept {
    if (u < 128) bits_[u >> 6] |= std::uint64_t{1} << (u & 63);
  }
  std::uint64_t bits_[2] = {0, 0};
};

// A chain's dispatch table has a slot per message type byte pgwarden knows (a request kind, in
// the retired chain, has the slot of its value); every other byte shares the last slot, which
// reaches every stage. Bytes sharing a slot reach the stages of all of them: never fewer.
inline constexpr std::size_t kTypeSlots = 32;
namespace detail {
inline constexpr char kKnownTypes[] = "BCDEFHPQSXcdfp123AGIKNRTVWZnstv";  // frontend, then backend
static_assert(sizeof kKnownTypes - 1 < kTypeSlots);
struct SlotTable {
  std::uint8_t slot[256];
  constexpr SlotTable() : slot{} {
    for (std::uint8_t& s : slot) s = kTypeSlots - 1;
    for (std::size_t i = 0; i + 1 < sizeof kKnownTypes; ++i) {
      slot[static_cast<unsigned char>(kKnownTypes[i])] = static_cast<std::uint8_t>(i);
    }
    for (unsigned k = 0; k < 10; ++k) slot[k] = static_cast<std::uint8_t>(k);  // request kinds
  }
};
inline constexpr SlotTable kSlots;
}  // namespace detail
inline std::uint8_t type_slot(char type) noexcept {
  return detail::kSlots.slot[static_cast<unsigned char>(type)];
}
template <class T>
std::uint8_t type_slot(T kind) noexcept {
  return type_slot(static_cast<char>(kind));
}

// What each hook of a stage acts on. Replies to pgwarden's own requests (Origin::Gateway) reach
// every stage in the backend chain whatever their type.
struct Interest {
  TypeSet frontend = TypeSet::all();       // on_frontend, by frontend message type
  TypeSet frontend_done = TypeSet::all();  // on_frontend_done, by frontend message type
  TypeSet backend = TypeSet::all();        // on_backend, by backend message type
  TypeSet retired = TypeSet::all();        // on_retired, by request kind
  // While Stage::gates_input() says so, on_frontend sees every frontend message, whatever
  // `frontend` says (a stage that can make all input wait: a COPY block of its own, a check).
  bool gates = false;
};

// Owners of pgwarden's own upstream requests (Request::owner).
inline constexpr std::uint8_t kOwnerMasking = 1;
inline constexpr std::uint8_t kOwnerPolicy = 2;
inline constexpr std::uint8_t kOwnerSession = 3;  // the reset of a pooled session (handover)

// The requests of one batch of pgwarden's own statements (StageHost::send_own_statements).
struct OwnBatch {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  bool contains(std::uint64_t id) const noexcept { return first != 0 && id >= first && id <= last; }
};

// The names of the statement and portal pgwarden's own statements run as: this prefix and 128
// random bits, drawn once per session. No client can name one of its own so, in this session or
// (through a pooler upstream) in another one that gets its server connection next.
inline constexpr std::string_view kOwnStatementPrefix = "pgwarden.own.";

// What a stage may ask of its session.
class StageHost {
 public:
  explicit StageHost(CoreServices& core) noexcept : core_(&core) {}
  virtual ~StageHost() = default;
  virtual protocol::PipelineModel& model() noexcept = 0;
  // The session's core (not virtual: nearly every stage reads it for nearly every message).
  CoreServices& core() noexcept { return *core_; }
  virtual const Caller& caller() const noexcept = 0;
  virtual std::uint64_t session_id() const noexcept = 0;
  // Sends a message of pgwarden's own upstream, committed as a Gateway request of `owner`.
  virtual protocol::Request* send_own(protocol::Bytes message, std::uint8_t owner) = 0;
  // Runs `statements` upstream as one extended-protocol batch of pgwarden's own: the session's
  // own statement and portal closed first (left over if an earlier batch failed between its
  // Parse and its Closes), then each statement parsed, bound, executed (text results, no row
  // limit) and closed under those names, then a Sync. Unlike a simple Query, this leaves the
  // client's unnamed statement and portal as they were. The replies: two CloseCompletes; for
  // each statement a ParseComplete, a BindComplete, its rows and CommandComplete, two
  // CloseCompletes (or an ErrorResponse, and nothing more until the ReadyForQuery).
  OwnBatch send_own_statements(std::uint8_t owner, std::initializer_list<std::string_view> sqls);
  // The session's name for its own statement and portal (kOwnStatementPrefix and random bits).
  const std::string& own_name();
  virtual void send_client(protocol::Bytes bytes) = 0;
  // Upstream-bound bytes wait from now until release_upstream() (strict recording).
  virtual void hold_upstream() = 0;
  virtual void release_upstream() = 0;
  // The message held (Verdict::Hold) is decided: it goes upstream, or is refused with
  // `message`; `outcome` says by whom (or that the wait timed out), for the recording.
  virtual void decide_held(bool approved, std::string_view sqlstate, std::string message,
                           std::string outcome) = 0;
  // Ends the session now, or after the replies already due.
  virtual void fail(std::string_view sqlstate, std::string_view message) = 0;
  virtual void fail_after_replies(std::string_view sqlstate, const std::string& message) = 0;

 private:
  CoreServices* core_;
  std::string own_name_;
};

class Stage {
 public:
  virtual ~Stage() = default;
  // A frontend message: set m.verdict (and its fields) to do anything but forward it.
  virtual void on_frontend(FrontendMessage& m) { (void)m; }
  // Its fate is sealed: sent upstream as `r`, refused (r: its stand-in or local answer), held
  // (r null) or ignored by the server (r null).
  virtual void on_frontend_done(FrontendMessage& m, protocol::Request* r) { (void)m, (void)r; }
  // A held message was approved and is about to run: a stage that cannot let it run (the
  // recording cannot take its approval record) refuses it with m.refuse(), and it is refused.
  virtual void on_held_approved(FrontendMessage& m) { (void)m; }
  // A held message was decided: m.verdict is Forward (approved; sent upstream as `r`) or Refuse
  // (r: its stand-in or local answer); m.reason says by whom, or that the wait timed out.
  virtual void on_held_decided(FrontendMessage& m, protocol::Request* r) { (void)m, (void)r; }
  // A backend message.
  virtual void on_backend(BackendMessage& m) { (void)m; }
  // A request left the model, answered or skipped.
  virtual void on_retired(const protocol::Request& r) { (void)r; }
  virtual void on_tick(std::int64_t now_ns) { (void)now_ns; }
  // Which messages the hooks above act on (read when the session builds its chains). Narrower
  // than every message only where the hook provably does nothing with the rest.
  virtual Interest interest() const noexcept { return {}; }
  // A stage whose interest `gates`: whether its on_frontend must now see every frontend message
  // (it may make them wait). Read from its state for each message, never cached: the session
  // reads it through the concrete stage (Session::on_frontend_message), tests through this.
  virtual bool gates_input() const noexcept { return false; }
  // The session ends (before its resources go).
  virtual void on_close() {}
};

// The stages of one hook, in order, and which of them act on each message type (or request
// kind): a bit per stage in each slot (Stage::interest, type_slot).
struct StageChain {
  Stage* stages[6] = {};
  std::uint8_t len = 0;
  std::uint8_t every = 0;
  std::uint8_t by_slot[kTypeSlots] = {};
  void add(Stage* s, TypeSet set = TypeSet::all()) noexcept {
    const auto bit = static_cast<std::uint8_t>(1u << len);
    for (unsigned b = 0; b < 256; ++b) {
      if (set.has(static_cast<char>(b))) by_slot[type_slot(static_cast<char>(b))] |= bit;
    }
    by_slot[kTypeSlots - 1] |= bit;  // bytes pgwarden does not know reach every stage
    every |= bit;
    stages[len++] = s;
  }
  Stage* const* begin() const noexcept { return stages; }
  Stage* const* end() const noexcept { return stages + len; }
  // f(stage), in order, for each stage acting on `type` (every stage when `all`).
  template <class T, class F>
  void each(T type, bool all, F&& f) const {
    if (every == 0) return;  // no stage acts (a bare relay)
    unsigned mask = all ? every : by_slot[type_slot(type)];
    while (mask != 0) {
      const unsigned i = static_cast<unsigned>(__builtin_ctz(mask));
      mask &= mask - 1;
      f(stages[i]);
    }
  }
};

}  // namespace pgwarden::core
