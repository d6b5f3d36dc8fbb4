// Named prepared statements behind a transaction-mode pooler (--upstream-pooler transaction).
// PgBouncer 1.18 hands a client's next transaction whichever server connection is free, so a
// statement prepared on one server is missing on the next. This stage never leaves a named
// statement on the server: it keeps each one the client prepares (its text and parameter types,
// exactly as the chain judged and recorded them), sends the client's named Parse upstream as a
// Parse of the unnamed statement, and puts an unnamed Parse of the kept text right before each
// Bind or Describe of the name (the model's prelude: its ParseComplete is swallowed, its error is
// the Bind's or Describe's). The pipeline model keeps the client's view of the names.
//
// The server's unnamed statement is known only within one batch (up to Sync: after it the pooler
// may give the client another server, whose unnamed statement is another client's). A Bind or
// Describe of the client's unnamed statement in a later batch, or after pgwarden's own Parse took
// the unnamed statement, gets the client's last unnamed Parse again first; without one it is
// refused (26000), as PostgreSQL refuses it, so that nothing another client parsed runs here.
// Lives on the session's core; one per session.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/stages/stage.h"
#include "protocol/by_name.h"

namespace pgwarden::core {

class PoolerStage final : public Stage {
 public:
  explicit PoolerStage(StageHost& host);

  // Refuses what PostgreSQL would refuse and pgwarden can no longer leave to it (a name in use, a
  // name never prepared), and what would pass the stage's bound on memory.
  void on_frontend(FrontendMessage& m) override;
  // A Parse that did not run created nothing: its text is forgotten.
  void on_retired(const protocol::Request& r) override;
  // DEALLOCATE ALL and DISCARD ALL drop the names made before them.
  void on_backend(BackendMessage& m) override;

  // The message `v` goes upstream now (it passed the chain, or an approver let it go). True when
  // other bytes go in its place (out()); prelude() then says whether they start with a Parse of
  // pgwarden's own, to be committed with the message (PipelineModel::commit's `prelude`).
  bool rewrite(const protocol::FrontendView& v);
  protocol::Bytes out() const noexcept { return out_; }
  bool prelude() const noexcept { return prelude_; }

  std::size_t statements_kept() const noexcept { return named_.size(); }
  std::size_t bytes_kept() const noexcept { return bytes_; }
  // The bounds of one session's kept statements: past them a Parse is refused (54000).
  static constexpr std::size_t kMaxStatements = 10000;
  static constexpr std::size_t kMaxBytes = 8u << 20;  // texts and parameter types, named ones

 private:
  struct Kept {
    std::string text;
    std::string types;          // the Parse's parameter type OIDs, as sent (4 bytes each)
    std::uint64_t created = 0;  // id of the client's Parse that made it
    bool confirmed = false;     // that Parse was answered (ParseComplete): the name exists
    std::size_t size() const noexcept { return text.size() + types.size(); }
  };
  // What the server's unnamed statement holds now, as far as this batch tells.
  enum class Holds : std::uint8_t {
    Unknown,  // not known (a new batch: the pooler may have given another server)
    Client,   // the client's own unnamed statement
    Named,    // a named statement of the client's (holds_name_), parsed by pgwarden
  };

  void keep(Kept& k, const protocol::FrontendView& v);
  void inject(const Kept& k);
  // A Bind or Describe of statement `name`: the bytes that run it against the unnamed statement.
  bool rewrite_use(const protocol::FrontendView& v, std::string_view name);
  void forget(std::string_view key);
  void refuse_missing(FrontendMessage& m, std::string_view name) const;

  StageHost& host_;
  protocol::ByName<Kept> named_;  // keys cut at 63 bytes
  std::size_t bytes_ = 0;         // Kept::size() of named_
  Kept unnamed_;                  // the client's last unnamed Parse (when has_unnamed_)
  bool has_unnamed_ = false;
  // A simple Query dropped unnamed_ (its id), unless the server skips it (an error earlier in its
  // batch): then unnamed_ is the client's again, if nothing changed it since.
  std::uint64_t dropped_by_query_ = 0;
  Holds holds_ = Holds::Unknown;
  std::string holds_name_;
  // Named portals the client bound in its current transaction, with the Bind's request id: on a
  // pooled server any other named portal (a WITH HOLD cursor) may be another client's.
  protocol::ByName<std::uint64_t> portals_;
  static constexpr std::size_t kMaxPortals = 10000;
  std::string nobody_;  // a statement name nobody has: Close of it is a no-op, Bind of it fails
  std::basic_string<std::byte> out_;
  bool prelude_ = false;
};

}  // namespace pgwarden::core
