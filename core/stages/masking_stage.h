// The masking stage: every backend message that can carry data (DataRow, CopyData, ErrorResponse,
// NoticeResponse, NotificationResponse, FunctionCallResponse) goes through the core's Masker
// under the caller's masking profile before the client (and the recording) sees it. Rows follow
// the description the pipeline model says they follow: a simple Query's RowDescription, or the
// Describe of the portal an Execute runs, which this stage sends itself right before any Execute
// nobody described (its reply never reaches the client). Rows of unknown shape are masked blind.
// Masked columns named by table come from a catalog query of the stage's own, sent when the
// session is settled; until it is answered, rows under column rules are masked blind. Lives on
// the session's core.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/stages/stage.h"
#include "policy/copy_rows.h"
#include "policy/masking.h"
#include "policy/output_reads.h"
#include "protocol/by_name.h"

namespace pgwarden::core {

class MaskingStage final : public Stage {
 public:
  explicit MaskingStage(StageHost& host) : host_(host) {}

  void on_frontend(FrontendMessage& m) override;
  void on_frontend_done(FrontendMessage& m, protocol::Request* r) override;
  void on_held_decided(FrontendMessage& m, protocol::Request* r) override;
  void on_backend(BackendMessage& m) override;
  void on_retired(const protocol::Request& r) override;
  // What runs or names a statement (every frontend message while a COPY's block defers them
  // all or the catalog query is due to go ahead of any); what changes names, reads or the last
  // Sync; messages that carry values, COPY's, and ReadyForQuery (portals end); requests whose
  // reads or names are kept.
  Interest interest() const noexcept override {
    namespace fe = protocol::fe;
    namespace be = protocol::be;
    using K = protocol::RequestKind;
    return {TypeSet{fe::kQuery, fe::kParse, fe::kBind, fe::kExecute, fe::kFunctionCall},
            TypeSet{fe::kQuery, fe::kParse, fe::kBind, fe::kExecute, fe::kClose, fe::kSync,
                    fe::kFunctionCall},
            TypeSet{be::kDataRow, be::kErrorResponse, be::kNoticeResponse,
                    be::kNotificationResponse, be::kFunctionCallResponse, be::kParameterStatus,
                    be::kCopyOutResponse, be::kCopyData, be::kReadyForQuery},
            TypeSet{K::Query, K::Parse, K::Bind, K::Execute}, true};
  }

  // The caller's profile under the policy in force (null: values go out as they are). Picks up a
  // reloaded policy at once, whatever message is being handled.
  const policy::MaskProfile* profile() {
    const policy::Policy* pol = host_.core().policy;
    if (pol != nullptr && pol->id() == policy_id_) return mask_;
    return profile_changed(pol);
  }
  // Text going into the recording (statements, parameters), with the profile's findings masked.
  // `judged`: FrontendMessage::judged, when `text` is that message's text.
  std::string_view for_record(std::string_view text, std::uint64_t judged = 0);
  // A large message's scratch memory goes back: the session calls it once each message it read
  // whole is handled (and when the stage leaves the chain), whichever stages that message reached.
  void trim() noexcept {
    if (out_.capacity() > kKeepBytes || text_.capacity() > kKeepBytes) release_scratch();
  }
  std::size_t scratch_bytes() const noexcept { return out_.capacity() + text_.capacity(); }
  // Rows, COPY data, notices, notifications and function results must be read whole.
  bool reads_data() { return catalog_pending_ || profile() != nullptr; }
  // A profile applies: statements must be classified (COPY TO and its options, DDL).
  bool needs_classes() { return profile() != nullptr; }
  // A COPY it described, or the block it opened for one, is still in flight: the stage stays in
  // the chains until they are done, whatever a reload did to the profile.
  bool copy_in_flight() const noexcept { return copy_ != nullptr || copy_commit_id_ != 0; }
  // pgwarden's own transaction block around a COPY TO is open: every client message waits
  // until it is closed (even those answered by pgwarden itself, whose ReadyForQuery would
  // otherwise tell the block's transaction state).
  bool holds_input() const noexcept { return (copy_ && copy_->wrapped) || copy_commit_id_ != 0; }
  // Outside the types of its interest, on_frontend acts only on these: the COPY block's deferral
  // and the catalog query. (A reloaded profile is picked up when the session rebuilds its
  // chains, before the message.)
  bool gates_input() const noexcept override { return copy_in_flight() || catalog_due_; }
  // For the recording's session start: the profile, "exempt (NAME)" or "none".
  std::string label();

 private:
  void update(const policy::Policy& pol);
  const policy::MaskProfile* profile_changed(const policy::Policy* pol);
  void release_scratch() noexcept;
  // Sends the catalog query when it is due and the session is settled.
  void send_catalog_query() {
    if (catalog_due_) send_catalog_query_now();
  }
  void send_catalog_query_now();
  void on_own_reply(BackendMessage& m);
  void catalog_changed();
  bool resolved() const noexcept;
  std::string cache_key() const;
  const policy::ResultPlan& plan(const protocol::ResultShape& shape, const policy::MaskProfile& p,
                                 const protocol::Request* r);
  void mask_row(BackendMessage& m, const policy::MaskProfile& p);
  void mask_copy_data(BackendMessage& m, const policy::MaskProfile& p);
  void mask_notification(BackendMessage& m, const policy::MaskProfile& p);
  void mask_function_result(BackendMessage& m, const policy::MaskProfile& p);
  void mask_parameter(BackendMessage& m, const policy::MaskProfile& p);
  void replace(BackendMessage& m);
  // Column rules that follow the data (policy/output_reads.h): what each statement's values are
  // computed from, kept per request, prepared statement and portal while column rules apply.
  using Reads = std::shared_ptr<const std::vector<policy::StatementReads>>;
  Reads reads_for(std::string_view text, std::uint64_t judged = 0);
  // Refuses a statement whose text (a Query or Parse) would copy a masked value out; keeps its
  // reads for remember_reads. The messages of every prepared statement's run have no text.
  bool refuse_copying(FrontendMessage& m, const policy::MaskProfile& p) {
    pending_.reset();
    return m.view.query && refuse_copying_text(m, p);
  }
  bool refuse_copying_text(FrontendMessage& m, const policy::MaskProfile& p);
  void remember_reads(FrontendMessage& m, protocol::Request* r);
  // Whatever becomes of a Parse or Bind, what an earlier statement or portal of its name read
  // no longer applies.
  void forget_reads(const FrontendMessage& m) {
    if (m.view.type == protocol::fe::kParse) forget_statement(m.view.name);
    if (m.view.type == protocol::fe::kBind) portals_.forget(m.view.name);
  }
  void forget_statement(std::string_view name);
  // What the statement now answering computed its values from (null: nothing to go by), and
  // which statement of the Reads it is.
  std::pair<Reads, std::size_t> current_reads(const protocol::Request* r) const;
  bool withhold_error(BackendMessage& m, const policy::MaskProfile& p);
  // COPY TO STDOUT under column rules (masking_copy.cc): described upstream ahead of it, its
  // rows masked field by field.
  bool prepare_copy(FrontendMessage& m, const policy::MaskProfile& p);
  void on_copy_describe(BackendMessage& m);
  void start_copy(BackendMessage& m, const policy::MaskProfile& p);
  bool mask_copy_fields(BackendMessage& m, std::string_view& payload);
  void end_copy_block(BackendMessage& m);
  bool copy_error(BackendMessage& m, const policy::MaskProfile& p);

  StageHost& host_;
  std::uint64_t policy_id_ = 0;
  const policy::MaskProfile* mask_ = nullptr;
  std::string exempt_;  // the exempt profile's name, when the caller is exempt
  // Column rules resolved through the catalog: (table OID, column) -> action.
  std::shared_ptr<const policy::MaskedAttrs> attrs_;
  std::unique_ptr<policy::MaskedAttrs> building_;
  std::string catalog_query_;  // the profile's catalog query ("" = no column rules)
  std::string catalog_error_;
  bool catalog_due_ = false;      // to be sent when the session is settled
  bool catalog_pending_ = false;  // sent, not yet answered
  OwnBatch catalog_batch_;        // its requests
  bool attrs_current_ = false;    // attrs_ answer catalog_query_ and no DDL ran since
  // The plan of the rows now arriving, rebuilt when their description changes.
  policy::ResultPlan plan_;
  std::string plan_rd_;
  std::uint64_t plan_key_ = 0;
  bool plan_valid_ = false;
  static constexpr std::size_t kKeepBytes = 64u << 10;  // scratch kept between messages
  Reads pending_;                                       // of the Query or Parse in the chain now
  Reads held_reads_;                                    // of the one held for approval
  // What the Query and Execute requests in flight read, in request order (ids only grow): kept in
  // a vector, found by binary search, erased as they retire; no allocation per request.
  class InFlight {
   public:
    void put(std::uint64_t id, Reads reads);
    const Reads* find(std::uint64_t id) const;
    void erase(std::uint64_t id) {
      // Most requests retiring (Bind, Describe, Sync) were never kept: ids below the first kept.
      if (head_ != v_.size() && id >= v_[head_].first) erase_kept(id);
    }
    void clear() noexcept {
      v_.clear();
      head_ = 0;
    }

   private:
    void erase_kept(std::uint64_t id);
    std::vector<std::pair<std::uint64_t, Reads>> v_;  // from head_ on; null Reads: retired
    std::size_t head_ = 0;
  };
  InFlight by_request_;
  template <class T>
  using ByName = protocol::ByName<T>;
  // What each prepared statement reads, and its Parse's request id until the server carried it
  // out (0 then). Past a Sync (or Query) after an unanswered Parse, a Bind of its name gets
  // unknown reads: had the Parse failed (the name existed), the Bind runs what was there before.
  struct Statement {
    Reads reads;
    std::uint64_t unconfirmed = 0;
  };
  protocol::RecentByName<Statement> by_statement_;
  std::uint64_t last_sync_ = 0;  // the last Sync or Query request the client sent
  Reads statement_reads(std::string_view name) const;
  // What each portal reads, and the Bind request that bound it. The unnamed portal, bound by
  // nearly every statement, has a slot of its own: nothing hashed or compared for it.
  class Portals {
   public:
    // (Names are keyed as PostgreSQL keys them: protocol::name_key.)
    void forget(std::string_view name) {  // bound again: what was kept no longer applies
      if (name.empty()) {
        unnamed_.reads.reset();
      } else {
        forget_named(protocol::name_key(name));
      }
    }
    // False past the bound on names kept (then running it is taken to read anything).
    bool keep(std::string_view name, Reads reads, std::uint64_t bind_id) {
      if (!name.empty()) return keep_named(protocol::name_key(name), std::move(reads), bind_id);
      unnamed_ = {std::move(reads), bind_id};
      return true;
    }
    // Null: nothing kept. Unknown reads (opaque) for a portal whose Bind is unanswered with a
    // Sync (or Query) after it, `last_sync`: had the Bind failed, the portal there before runs.
    const Reads& find(std::string_view name, std::uint64_t last_sync) const {
      const Bound& b = name.empty() ? unnamed_ : find_named(protocol::name_key(name));
      return b.confirmed || b.bind_id > last_sync ? b.reads : unconfirmed(b);
    }
    void confirm(std::string_view name, std::uint64_t bind_id);  // the server carried it out
    void erase(std::string_view name) { forget(name); }          // closed, or its Bind failed
    void clear() noexcept;
    void ended(std::uint64_t before);  // those bound before request `before` are gone

   private:
    struct Bound {
      Reads reads;
      std::uint64_t bind_id = 0;
      bool confirmed = false;
    };
    void forget_named(std::string_view name);
    bool keep_named(std::string_view name, Reads reads, std::uint64_t bind_id);
    const Bound& find_named(std::string_view name) const;
    static const Reads& unconfirmed(const Bound& b);
    Bound unnamed_;
    ByName<Bound> named_;
  };
  Portals portals_;
  struct CachedReads {
    std::string key;
    bool shape = false;  // key is a statement's shape (else its text)
    Reads reads;
    std::uint64_t used = 0;  // reads_clock_ when last used (0: empty)
    // refusal_of found none of `reads` refused by this profile (of the policy with this id).
    const policy::MaskProfile* passes = nullptr;
    std::uint64_t passes_policy = 0;
  };
  CachedReads* last_entry_ = nullptr;     // the entry reads_for answered from (null: none)
  std::vector<CachedReads> reads_cache_;  // by statement shape (numbers never matter here)
  std::uint64_t reads_clock_ = 0;
  std::string shape_;
  policy::ComputedRules computed_;
  Reads plan_reads_;  // the plan's computed rules come from (*plan_reads_)[plan_index_]
  std::size_t plan_index_ = 0;
  struct CopyOut {
    policy::CopyFormat format;
    Reads reads;                              // of its query (computed columns)
    std::uint64_t request = 0;                // the client's COPY Query
    std::uint64_t first_id = 0, last_id = 0;  // the describing requests
    std::string rd;                           // the RowDescription of its rows
    bool described = false;
    bool wrapped = false;  // in a transaction block pgwarden opened for it (client was idle)
    std::basic_string<std::byte> error;  // the describe's ErrorResponse, when it failed
    bool failed = false;
  };
  std::unique_ptr<CopyOut> copy_;  // the COPY TO under column rules in flight
  policy::ResultPlan copy_plan_;
  bool copy_rules_ = false;           // the COPY now sending rows is masked field by field
  bool copy_rules_header_ = false;    // its header is still to come
  std::uint64_t copy_count_ = 0;      // names pgwarden's describing statements
  std::uint64_t copy_commit_id_ = 0;  // the COMMIT ending a COPY's block, until answered
  std::string copy_row_;
  bool copy_header_ = false;  // the binary COPY in progress has not sent its header yet
  std::basic_string<std::byte> out_;
  std::string text_;
};

}  // namespace pgwarden::core
