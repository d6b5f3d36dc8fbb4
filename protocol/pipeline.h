// The pipeline model: the one place that follows the protocol state PostgreSQL follows for a
// session in its ready phase. Every frontend message that goes upstream is committed to it once,
// and every backend message is fed to it once, in stream order; it answers which request each
// reply belongs to, which requests the server skipped after an error (PostgreSQL skips extended-
// protocol messages up to Sync), the transaction status, COPY states, the settings that change how
// SQL is lexed, and which RowDescription describes the rows now arriving. Where it cannot know it
// says so (an Execute nobody described, a reply it did not predict), and the stages fail closed.
// Sans-I/O; one per session, owned by the session's core. (PostgreSQL docs, "Message Flow";
// src/backend/tcop/postgres.c.)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/by_name.h"
#include "protocol/frontend.h"

namespace pgwarden::protocol {

enum class RequestKind : std::uint8_t {
  Query,
  Parse,
  Bind,
  DescribeStatement,
  DescribePortal,
  Execute,
  CloseStatement,
  ClosePortal,
  Sync,
  FunctionCall,
};
const char* request_kind_name(RequestKind k);

enum class Origin : std::uint8_t {
  Client,   // the client's own message
  Gateway,  // sent by a stage for itself (its replies never reach the client)
  StandIn,  // replaces a refused extended-protocol message upstream: it fails, so the server
            // skips the rest of the pipeline up to Sync as if it had refused the message itself
  Local,    // a refused Query or FunctionCall answered by pgwarden (never sent upstream)
};

enum class RequestState : std::uint8_t { Queued, Done, Skipped };

// What a Describe of a portal told (the RowDescription of the rows an Execute returns). Shared by
// the Describe and the Executes that run the portal it described; pooled by the model.
class Shape {
 public:
  enum class State : std::uint8_t { Pending, Rows, NoRows };
  State state() const noexcept { return state_; }
  // The whole RowDescription message ('T'), when state() is Rows.
  Bytes row_description() const noexcept {
    return {reinterpret_cast<const std::byte*>(rd_.data()), rd_.size()};
  }
  // Changes whenever the content does: caches built from a shape key on (address, version).
  std::uint64_t version() const noexcept { return version_; }

 private:
  friend class PipelineModel;
  friend class ShapeRef;
  State state_ = State::Pending;
  std::uint32_t refs_ = 0;
  std::uint64_t version_ = 0;
  std::string rd_;
  class PipelineModel* owner_ = nullptr;
  Shape* next_free_ = nullptr;
};

// A counted reference to a pooled Shape.
class ShapeRef {
 public:
  ShapeRef() = default;
  explicit ShapeRef(Shape* s) noexcept : s_(s) {
    if (s_ != nullptr) ++s_->refs_;
  }
  ShapeRef(const ShapeRef& o) noexcept : ShapeRef(o.s_) {}
  ShapeRef(ShapeRef&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  ShapeRef& operator=(ShapeRef o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~ShapeRef() { reset(); }
  void reset() noexcept;
  Shape* get() const noexcept { return s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  Shape* s_ = nullptr;
};

// One frontend message that the server answers (or a gateway-answered refusal), in the order
// the server processes them.
struct Request {
  std::uint64_t id = 0;
  RequestKind kind = RequestKind::Sync;
  Origin origin = Origin::Client;
  RequestState state = RequestState::Queued;
  std::uint8_t owner = 0;     // Gateway requests: which stage sent it
  bool failed = false;        // answered with an ErrorResponse
  bool may_copy_in = false;   // may start COPY FROM STDIN (its text names COPY and STDIN)
  std::uint8_t copy = 0;      // kCopy* below
  bool in_result = false;     // Query: a RowDescription came, its rows follow
  bool described = false;     // DescribeStatement: the ParameterDescription came
  std::uint32_t results = 0;  // Query: statements completed so far
  std::uint64_t rows = 0;     // DataRows of the current result
  ShapeRef shape;    // DescribePortal: what it tells; Execute: the description its rows follow
  std::string name;  // Parse, Bind, Close: the statement or portal it creates or drops
  std::uint64_t tag[2] = {0, 0};  // owned by the stages (the model never reads them)
  std::int64_t sent_ns = 0;       // the session's, for /metrics (the model never reads it)
  std::string tag_text;           // likewise (e.g. a refusal's message)
  // Bind or DescribeStatement: pgwarden sent a Parse of the unnamed statement right before it
  // (--upstream-pooler transaction). Its ParseComplete comes first and is not the client's; its
  // error is this request's (the server then skips this request, as it would after its own error).
  bool prelude = false;

  static constexpr std::uint8_t kCopyNone = 0;
  static constexpr std::uint8_t kCopyMaybe = 1;  // may still start COPY FROM STDIN
  static constexpr std::uint8_t kCopyIn = 2;     // in COPY FROM STDIN
};

// Which description the rows now arriving follow.
struct ResultShape {
  const Shape* shape = nullptr;  // null: unknown (rows are handled blind)
  Bytes row_description;         // whole 'T' when known
};

class PipelineModel {
 public:
  struct Limits {
    std::size_t max_requests = 4096;  // in flight; past it the session stops reading the client
    std::size_t max_names = 10000;    // named statements, and portals, tracked (each)
  };
  PipelineModel() : PipelineModel(Limits{}) {}
  explicit PipelineModel(Limits limits);
  ~PipelineModel();
  PipelineModel(const PipelineModel&) = delete;
  PipelineModel& operator=(const PipelineModel&) = delete;

  // ---- frontend -----------------------------------------------------------------------------
  // What the server does with a message sent now.
  enum class Fate : std::uint8_t {
    Request,    // it is answered: commit() it when it goes upstream
    Ignored,    // no reply and no effect (Flush; COPY messages outside COPY; Sync in COPY)
    CopyData,   // part of the COPY FROM STDIN in progress
    CopyEnd,    // CopyDone/CopyFail ending it
    Violation,  // any other message during COPY FROM STDIN: PostgreSQL fails the COPY with it
    Terminate,
  };
  Fate fate(const FrontendView& v) const noexcept;
  // The message goes upstream now (its fate was not Violation). Returns the request it became,
  // or null when it gets no reply. A request committed while the server skips to Sync is
  // committed Skipped. Stages may fill its tags. `prelude`: a Bind or Describe of a statement
  // that goes upstream behind a Parse of pgwarden's own (Request::prelude).
  Request* commit(const FrontendView& v, Origin origin = Origin::Client, std::uint8_t owner = 0,
                  bool prelude = false);
  // A refused Query or FunctionCall answered by pgwarden when its turn comes (ERROR and
  // ReadyForQuery), unless the server would have skipped it.
  Request& commit_local(RequestKind kind);
  // An Execute that needs no description injected: one that runs the portal the request just
  // before it described (or ran). Executes that return to "unknown" should be described first.
  bool execute_described(const FrontendView& execute) const noexcept;

  // Input must wait: a request may have started COPY FROM STDIN, and until its replies say
  // whether it did, the server's reading of what follows is unknown.
  bool input_barrier() const noexcept { return barrier_ != 0; }
  // Nothing in flight: every request answered, no COPY in progress.
  bool settled() const noexcept { return count_ == 0 && !copy_in_; }
  // Every request in flight will be answered without more input from the client (no extended-
  // protocol message since the last Sync).
  bool answers_due() const noexcept { return !batch_open_ && !copy_in_; }
  bool full() const noexcept { return count_ >= limits_.max_requests; }
  bool copy_in() const noexcept { return copy_in_; }
  bool copy_out() const noexcept { return copy_out_; }
  bool skipping() const noexcept { return skipping_; }
  bool terminated() const noexcept { return terminated_; }

  // ---- backend ------------------------------------------------------------------------------
  struct Event {
    Request* request = nullptr;        // the request this message answers; null: asynchronous
    bool completes = false;            // its last reply
    bool fatal = false;                // an ErrorResponse with severity FATAL or PANIC
    const char* divergence = nullptr;  // the model did not predict this message: fail closed
    bool prelude = false;  // the ParseComplete of a request's prelude: not for the client
  };
  // A backend message of the ready phase. `whole` is needed for T, Z, S, E, C, G, H, W; other
  // types may pass an empty span.
  Event on_backend(char type, Bytes whole);
  // Pops answered and skipped requests off the front, oldest first, calling f(const Request&)
  // for each. A Local request at the front is handed to `local` (which answers it) first.
  template <class F, class L>
  void retire(F&& f, L&& local);
  // retire() has something to do.
  bool retire_due() const noexcept {
    return count_ != 0 && (at(0).state != RequestState::Queued || at(0).origin == Origin::Local);
  }

  // ---- state --------------------------------------------------------------------------------
  char tx_status() const noexcept { return tx_status_; }
  bool standard_conforming_strings() const noexcept { return scs_; }
  const std::string& client_encoding() const noexcept { return client_encoding_; }
  // Which description the DataRows now arriving follow.
  ResultShape current_result() const noexcept;
  // COPY OUT in progress: its overall format (0 text, 1 binary).
  int copy_format() const noexcept { return copy_format_; }
  const Request* front() const noexcept { return count_ == 0 ? nullptr : &at(0); }
  // The request the server is answering now (a notice's, say), or null.
  const Request* answering() const noexcept { return const_cast<PipelineModel*>(this)->current(); }
  std::size_t in_flight() const noexcept { return count_; }
  // The id the next committed request gets.
  std::uint64_t next_id() const noexcept { return next_id_; }
  // A request in flight runs a statement (Query, Execute, FunctionCall): the transaction state
  // the last ReadyForQuery gave may no longer be the server's.
  bool runs_in_flight() const noexcept;
  // Requests of pgwarden's own (Origin::Gateway) in flight.
  std::size_t own_in_flight() const noexcept { return own_; }
  // Named statements and portals kept (bounded by Limits::max_names each).
  std::size_t names_kept() const noexcept { return statements_.map.size() + portals_.map.size(); }
  // The command tag of the last CommandComplete (e.g. "DEALLOCATE ALL").
  std::string_view last_tag() const noexcept { return last_tag_; }

 private:
  friend class ShapeRef;
  Request& at(std::size_t i) noexcept { return *ring_[(head_ + i) & mask_]; }
  const Request& at(std::size_t i) const noexcept { return *ring_[(head_ + i) & mask_]; }
  Request& push(RequestKind kind, Origin origin);
  Request* current() noexcept;  // the oldest request not yet answered
  void skip_to_sync(std::size_t after);
  void on_error(Request& r, Bytes whole, Event& ev);
  void on_parameter_status(Bytes whole);
  // What the model keeps of a named statement or portal.
  struct Named {
    bool copy = false;          // running it may start COPY FROM STDIN
    std::uint64_t created = 0;  // id of the request that made it
  };
  struct Names {
    ByName<Named> map;        // keys cut as PostgreSQL cuts them (63 bytes)
    bool overflowed = false;  // more names than kept: one not kept may be anything
    std::size_t copies = 0;   // names kept whose running may start COPY FROM STDIN
    bool may_copy(std::string_view name) const;
  };
  void set_name(Names& names, std::string_view name, bool copy, std::uint64_t created);
  void forget_name(Names& names, std::string_view name);
  // The server did not do what `r` asked (it failed or was skipped): what its name means now is
  // not known, so running it may start COPY FROM STDIN, for all the model can tell.
  void name_unknown(const Request& r);
  bool portal_may_copy_in(std::string_view portal) const;
  Shape* new_shape();
  void release(Shape* s) noexcept;

  Limits limits_;
  // Power-of-two capacity. Requests are allocated once per slot, on its first use, and never
  // move: a Request* or Event::request stays valid while the ring grows (a stage may send its
  // own request while another's reply is being handled), and a session that never had more
  // than one request in flight holds one.
  std::vector<std::unique_ptr<Request>> ring_;
  std::size_t mask_ = 0;  // ring_.size() - 1
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::size_t own_ = 0;  // Gateway requests among them
  std::uint64_t next_id_ = 1;
  // Named statements and portals: whether running them may start COPY FROM STDIN. Unknown names
  // (SQL PREPARE, DECLARE, cursors opened in functions) cannot be COPY.
  Names statements_;
  Names portals_;
  bool unnamed_statement_copy_ = false;
  bool unnamed_portal_copy_ = false;
  // The request committed last (Flush aside): an Execute right after a Describe of its portal
  // runs what was described.
  RequestKind last_kind_ = RequestKind::Sync;
  std::string last_portal_;
  ShapeRef last_shape_;
  bool skipping_ = false;    // an extended message failed and the client has not sent Sync yet
  bool batch_open_ = false;  // extended messages since the last Sync
  bool copy_in_ = false;     // the server reads COPY data from the client
  bool copy_out_ = false;
  int copy_format_ = 0;
  bool terminated_ = false;
  std::uint64_t barrier_ = 0;  // id of the request that may have started COPY FROM STDIN
  char tx_status_ = 'I';
  bool scs_ = true;
  std::string client_encoding_ = "UTF8";
  ShapeRef query_shape_;  // the RowDescription of the simple Query result in progress
  std::string last_tag_;
  std::vector<Shape*> shapes_;  // every shape ever made (freed with the model)
  Shape* free_ = nullptr;
};

inline void ShapeRef::reset() noexcept {
  if (s_ != nullptr && --s_->refs_ == 0) s_->owner_->release(s_);
  s_ = nullptr;
}

template <class F, class L>
void PipelineModel::retire(F&& f, L&& local) {
  while (count_ != 0) {
    Request& r = at(0);
    if (r.state == RequestState::Queued && r.origin == Origin::Local) {
      local(r);
      r.state = RequestState::Done;
    }
    if (r.state == RequestState::Queued) break;
    f(static_cast<const Request&>(r));
    if (r.origin == Origin::Gateway) --own_;
    r.shape.reset();
    head_ = (head_ + 1) & mask_;
    --count_;
  }
  if (count_ == 0) head_ = 0;  // the next request reuses the first slot
}

}  // namespace pgwarden::protocol
