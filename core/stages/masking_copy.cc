// COPY ... TO STDOUT under column rules (issue 14). COPY's rows carry no column names, so the
// stage learns them the way a client would: right before the client's COPY goes upstream it sends
// its own Parse of an equivalent SELECT (the table's listed columns, or the COPY's query), a
// Describe of it, a Close and a Sync; their replies never reach the client and arrive before the
// COPY's. Each row is then masked field by field as the same columns of a SELECT would be (text,
// CSV and binary), and the content detectors run over what results. A COPY the stage cannot
// describe this way is refused; a row that does not match its description ends the session.
#include "core/stages/masking_stage.h"
#include "core/worker.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
using policy::MaskProfile;

namespace {

// Client encodings in which an ASCII byte may be part of a multi-byte character: a delimiter or
// backslash byte is then not one, and fields cannot be split byte-wise.
bool splittable(std::string_view encoding) {
  for (const std::string_view e :
       {"SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB"}) {
    if (encoding == e) return false;
  }
  return true;
}

}  // namespace

bool MaskingStage::prepare_copy(FrontendMessage& m, const MaskProfile& p) {
  std::string why;
  std::optional<policy::CopyOutStatement> copy;
  const pr::PipelineModel& model = host_.model();
  if (m.view.type != pr::fe::kQuery) {
    why = "it comes through the extended protocol (send it as a simple Query)";
  } else if (!model.answers_due() || model.input_barrier()) {
    why = "it is pipelined after extended-protocol messages not yet synced";
  } else if (!model.settled()) {
    // Settings in flight (client_encoding) and the transaction state must be known first.
    m.verdict = Verdict::Defer;
    return false;
  } else if (copy_) {
    why = "another COPY TO is in flight";
  } else if (m.view.text.find('\\') != std::string_view::npos) {
    // standard_conforming_strings (which may change in flight) decides how PostgreSQL reads it.
    why = "its text has a backslash";
  } else if (!splittable(model.client_encoding())) {
    why = "the client encoding " + model.client_encoding() + " is not one its rows can be read in";
  } else {
    copy = policy::copy_out_statement(m.view.text, why);
  }
  if (!copy) {
    m.refuse(pr::sqlstate::kInsufficientPrivilege,
             "pgwarden: this COPY TO cannot be masked by the column rules of masking profile \"" +
                 p.name + "\": " + why + "; use SELECT");
    return false;
  }
  const std::string name = "pgwarden.copy." + std::to_string(++copy_count_);
  copy_ = std::make_unique<CopyOut>();
  copy_->format = copy->format;
  copy_->reads = reads_for(copy->select_text);
  // Its description and its rows must come from one transaction, under the describing Parse's
  // locks: otherwise another session could change a relation's columns in between. A client
  // outside a transaction block gets one of pgwarden's own around the two (its COPY's
  // ReadyForQuery says idle, as it would have; what it sends next waits until it is closed).
  copy_->wrapped = model.tx_status() == 'I';
  std::basic_string<std::byte> msg;
  auto send = [&] {
    const pr::Request* r = host_.send_own(msg, kOwnerMasking);
    msg.clear();
    if (r == nullptr) return;
    if (copy_->first_id == 0) copy_->first_id = r->id;
    copy_->last_id = r->id;
  };
  if (copy_->wrapped) {
    pr::append_query(msg, "BEGIN");
    send();
  }
  pr::append_parse(msg, name, copy->select_text);
  send();
  pr::append_describe(msg, 'S', name);
  send();
  pr::append_close(msg, 'S', name);
  send();
  pr::append_sync(msg);
  send();
  return true;
}

// Replies to the describing Parse, Describe, Close and Sync.
void MaskingStage::on_copy_describe(BackendMessage& m) {
  // Only the replies to the describing messages of the COPY now awaited (an earlier one's, for
  // a COPY refused after it was described, are dropped).
  const std::uint64_t id = m.request()->id;
  if (!copy_ || copy_->described || id < copy_->first_id || id > copy_->last_id) return;
  switch (m.type) {
    case pr::be::kRowDescription:
      copy_->rd.assign(reinterpret_cast<const char*>(m.whole.data()), m.whole.size());
      return;
    case pr::be::kErrorResponse:
      copy_->failed = true;  // the COPY fails the same way, or is stopped at its first reply
      if (copy_->error.empty()) copy_->error.assign(m.whole.data(), m.whole.size());
      return;
    case pr::be::kReadyForQuery:
      copy_->described = !copy_->rd.empty();
      return;
    default:
      return;
  }
}

void MaskingStage::start_copy(BackendMessage& m, const MaskProfile& p) {
  if (!splittable(host_.model().client_encoding())) {
    m.verdict = Verdict::Fail;
    m.sqlstate = pr::sqlstate::kInternalError;
    m.message =
        "pgwarden: the client encoding changed under a COPY TO masked by column rules; "
        "the session ends so that no value goes out unmasked";
    return;
  }
  const auto& reads = copy_->reads;
  policy::ComputedRules computed;
  if (reads && !reads->empty()) computed = policy::computed_rules(p, (*reads)[0]);
  const pr::Bytes rd(reinterpret_cast<const std::byte*>(copy_->rd.data()), copy_->rd.size());
  const bool built = policy::build_plan(p, attrs_.get(), rd, {}, copy_plan_,
                                        computed.active() ? &computed : nullptr);
  if (!built || !resolved()) {
    // Column rules not resolved yet: every field NULL (a description pgwarden cannot read
    // leaves no columns: the first row then ends the session).
    for (policy::MaskColumn& c : copy_plan_.columns) c.rule = policy::MaskAction::Null;
  }
  copy_rules_ = true;
  copy_rules_header_ =
      copy_->format.kind == policy::CopyFormat::Kind::Binary || copy_->format.header;
}

// In pgwarden's block a failed describe leaves the block failed, and the COPY then says only
// that (25P02): the client gets the describe's error instead, which is the COPY's own (the
// same names resolved the same way).
bool MaskingStage::copy_error(BackendMessage& m, const MaskProfile& p) {
  if (!copy_ || !copy_->failed || copy_->error.empty() || m.request() == nullptr ||
      copy_->request != m.request()->id) {
    return false;
  }
  const auto e = pr::read_error(m.whole);
  if (!e || e->sqlstate != "25P02") return false;
  if (!host_.core().masker->mask_error(p, copy_->error, out_)) out_ = copy_->error;
  replace(m);
  return true;
}

// The COPY's ReadyForQuery, in pgwarden's block: the client hears "idle", as it would have
// without the block, and pgwarden's COMMIT (a ROLLBACK after an error) closes it.
void MaskingStage::end_copy_block(BackendMessage& m) {
  out_.assign(m.whole.data(), m.whole.size());
  if (out_.size() > 5) out_[5] = static_cast<std::byte>('I');
  replace(m);
  std::basic_string<std::byte> commit;
  pr::append_query(commit, "COMMIT");
  const pr::Request* r = host_.send_own(commit, kOwnerMasking);
  copy_commit_id_ = r != nullptr ? r->id : 0;
  copy_->wrapped = false;
}

bool MaskingStage::mask_copy_fields(BackendMessage& m, std::string_view& payload) {
  const auto result = policy::mask_copy_row(*host_.core().masker, copy_plan_, copy_->format,
                                            payload, copy_rules_header_, copy_row_);
  switch (result) {
    case policy::CopyRowResult::Keep:
      return false;
    case policy::CopyRowResult::Replace:
      payload = copy_row_;
      return true;
    case policy::CopyRowResult::Mismatch:
      break;
  }
  m.verdict = Verdict::Fail;
  m.sqlstate = pr::sqlstate::kInternalError;
  m.message =
      "pgwarden: a COPY row does not match the columns described for it; the session ends so "
      "that no value goes out unmasked";
  return false;
}

}  // namespace pgwarden::core
