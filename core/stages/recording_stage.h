// The recording stage: who connected (session start), every statement-bearing message (Query,
// Parse, Bind, Execute, FunctionCall) with the policy's decision, each outcome attributed to the
// exact request the pipeline model says it answers (skipped requests recorded as skipped),
// refusals, approvals, result rows (--record-rows), COPY volumes and how the session ended.
// Nothing is forwarded unrecorded: when recording fails the statement is refused (58030), and in
// strict mode it waits upstream until its record is durable. Lives on the session's core.
#pragma once

#include <string>

#include "core/record_sink.h"
#include "core/stages/stage.h"
#include "policy/classifier.h"
#include "policy/sqlcommenter.h"

namespace pgwarden::core {

class MaskingStage;

class RecordingStage final : public Stage, public DurabilityWaiter {
 public:
  RecordingStage(StageHost& host, RecordSink& sink, MaskingStage& masking)
      : host_(host), sink_(sink), masking_(masking) {}

  void on_frontend(FrontendMessage& m) override;
  void on_frontend_done(FrontendMessage& m, protocol::Request* r) override;
  void on_held_approved(FrontendMessage& m) override;
  void on_held_decided(FrontendMessage& m, protocol::Request* r) override;
  void on_backend(BackendMessage& m) override;
  void on_retired(const protocol::Request& r) override;
  // Statements (records()), their outcomes, rows and COPY data; requests that carry a record.
  Interest interest() const noexcept override {
    namespace fe = protocol::fe;
    namespace be = protocol::be;
    using K = protocol::RequestKind;
    const TypeSet statements{fe::kQuery, fe::kParse, fe::kBind, fe::kExecute, fe::kFunctionCall};
    return {statements, statements,
            TypeSet{be::kCopyData, be::kDataRow, be::kCommandComplete, be::kEmptyQueryResponse,
                    be::kPortalSuspended, be::kErrorResponse, be::kFunctionCallResponse},
            TypeSet{K::Query, K::Parse, K::Bind, K::Execute, K::FunctionCall}};
  }
  void on_record_durable() override;
  void on_close() override { sink_.forget(*this); }

  // The session became ready (or ended before that, after authentication began).
  // `replication_rule`: a replication connection that rule allowed (relayed raw, unmasked).
  void record_start(const std::string& client, const std::string& tls,
                    const std::string& replication_rule = {});
  // A command of a replication connection (a whole Query message); false: no room to record.
  bool record_replication(protocol::Bytes query);
  void record_end(const std::string& reason);
  // The session's token was refreshed, or a refresh was refused (`what`: which, and why).
  void record_token(const std::string& what);
  void add_comment_tags(recorder::Payload& p, std::string_view sql);
  // COPY data the client sent into a COPY FROM STDIN.
  void on_copy_in(std::uint64_t bytes) noexcept { copy_in_ += bytes; }
  bool started() const noexcept { return started_; }
  // Rows of each statement recorded as the client got them.
  void set_rows(unsigned n) noexcept { rows_ = n; }

 private:
  static bool records(char type);
  void add_params(recorder::Payload& out, const protocol::FrontendView& v);
  // What a record says of the policy's decision on its statement.
  enum class Said : std::uint8_t { Allow, Grant, Hold, Deny };
  static const char* said_text(Said s) noexcept;
  std::uint32_t record_statement(const FrontendMessage& m, Said said);
  void record_refused(const FrontendMessage& m);
  void record_outcome(const protocol::Request* r, char type, protocol::Bytes whole);
  void record_row(const protocol::Request& r, protocol::Bytes whole);
  // (Most messages have no decision of their own: a Bind of a statement judged at its Parse.)
  void add_decision(recorder::Payload& p, const FrontendMessage& m, Said said) {
    if (m.decision != nullptr) add_decision_fields(p, *m.decision, said);
  }
  void add_decision_fields(recorder::Payload& p, const policy::Decision& d, Said said);
  void wait_durable(std::uint64_t end);

  StageHost& host_;
  RecordSink& sink_;
  MaskingStage& masking_;
  unsigned rows_ = 0;
  bool started_ = false;
  bool ended_ = false;
  std::uint32_t seq_ = 0;
  std::uint32_t pending_seq_ = 0;  // of the message in the chain now
  std::uint32_t held_seq_ = 0;     // of the message held for approval
  // The bind record this session appended last (its end, 0: none) and its portal: an Execute of
  // that portal read in the same pass, with nothing recorded since, goes into it (Executed).
  std::uint64_t bind_end_ = 0;
  std::int64_t bind_ns_ = 0;  // the loop's time when it was read
  std::string bind_portal_;
  std::int64_t held_since_ns_ = 0;
  std::uint64_t copy_in_ = 0, copy_out_ = 0;
  std::uint64_t last_end_ = 0;  // strict: what must be durable before upstream bytes go
  std::string describe_error_;  // the failed Describe pgwarden sent before an Execute
  bool holding_ = false;
  // The decision fields recorded last, encoded (a session's statements mostly cycle through a
  // few: a transaction's BEGIN, UPDATE, SELECT, INSERT and COMMIT), replaced in turn. An entry
  // is keyed by all that its bytes say: the decision, the rule (of the policy with that id) and
  // the class set.
  struct DecisionFields {
    Said said = Said::Allow;
    const policy::Rule* rule = nullptr;
    std::uint64_t policy = 0;
    policy::ClassSet classes = 0;
    std::string bytes;  // "" : empty slot
  };
  DecisionFields decision_fields_[8];
  std::uint8_t decision_fields_next_ = 0;
  policy::CommentTags app_tags_;  // from the session's application_name
  bool app_tags_read_ = false;
};

}  // namespace pgwarden::core
