#include "core/stages/masking_stage.h"

#include <charconv>
#include <cstring>

#include "core/log.h"
#include "core/worker.h"
#include "policy/role_guard.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
using policy::MaskProfile;

namespace {

constexpr std::int64_t kCatalogTtlNs = 30'000'000'000;  // a core re-reads after 30 s

// Statements after which the masked columns are read from the catalog again.
constexpr policy::ClassSet kCatalogChanging =
    policy::bit(policy::StatementClass::Ddl) | policy::bit(policy::StatementClass::Drop) |
    policy::bit(policy::StatementClass::Alter) | policy::bit(policy::StatementClass::SelectInto) |
    policy::bit(policy::StatementClass::DoBlock) | policy::bit(policy::StatementClass::DynamicSql) |
    policy::bit(policy::StatementClass::Utility);

void put_u32(std::basic_string<std::byte>& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::byte>((v >> s) & 0xff));
}

void with_body(std::basic_string<std::byte>& out, char type, std::string_view body) {
  out.clear();
  out.push_back(static_cast<std::byte>(type));
  put_u32(out, static_cast<std::uint32_t>(body.size() + 4));
  out.append(reinterpret_cast<const std::byte*>(body.data()), body.size());
}

std::string_view chars(pr::Bytes b, std::size_t from = 0) {
  return {reinterpret_cast<const char*>(b.data()) + from, b.size() - from};
}

}  // namespace

void MaskingStage::update(const policy::Policy& pol) {
  policy_id_ = pol.id();
  const Caller& c = host_.caller();
  const MaskProfile* m = pol.mask_profile(c.who());
  exempt_ = m != nullptr && m->exempt ? m->name : std::string();
  if (m != nullptr && (m->exempt || (!m->scans() && m->columns.empty()))) m = nullptr;
  mask_ = m;
  plan_valid_ = false;
  if (m == nullptr || m->columns.empty()) by_request_.clear();  // no reads are kept meanwhile
  std::string query = m != nullptr ? m->catalog_query() : std::string();
  if (query == catalog_query_ && attrs_current_) return;
  catalog_query_ = std::move(query);
  attrs_.reset();
  attrs_current_ = false;
  catalog_due_ = !catalog_query_.empty();
  if (!catalog_due_) return;
  const auto it = host_.core().catalog->find(cache_key());
  if (it != host_.core().catalog->end() &&
      host_.core().now_ns - it->second.resolved_ns < kCatalogTtlNs) {
    attrs_ = it->second.attrs;
    attrs_current_ = true;
    catalog_due_ = false;
  }
}

const MaskProfile* MaskingStage::profile_changed(const policy::Policy* pol) {
  if (pol == nullptr) {
    mask_ = nullptr;
    return nullptr;
  }
  if (pol->id() != policy_id_) update(*pol);
  return mask_;
}

std::string MaskingStage::label() {
  const MaskProfile* m = profile();
  if (m != nullptr) return m->name;
  return exempt_.empty() ? std::string("none") : "exempt (" + exempt_ + ")";
}

bool MaskingStage::resolved() const noexcept {
  return catalog_query_.empty() || attrs_current_;
}

std::string MaskingStage::cache_key() const {
  return host_.caller().upstream_database + '\n' + catalog_query_;
}

void MaskingStage::catalog_changed() {
  if (catalog_query_.empty()) return;
  catalog_due_ = true;
  attrs_current_ = false;
  plan_valid_ = false;
  host_.core().catalog->erase(cache_key());
}

// The catalog query goes upstream ahead of the client's next request, wherever the server will
// run it as a request of its own: not inside an unsynced extended-protocol batch (it could be
// skipped there) or a COPY. Its replies never reach the client. In a transaction the client's
// earlier requests failed, it fails too: it is then sent again later.
void MaskingStage::send_catalog_query_now() {
  const pr::PipelineModel& model = host_.model();
  if (!catalog_due_ || catalog_pending_ || !model.answers_due() || model.input_barrier()) return;
  catalog_due_ = false;
  catalog_pending_ = true;
  building_ = std::make_unique<policy::MaskedAttrs>();
  catalog_error_.clear();
  catalog_batch_ = host_.send_own_statements(kOwnerMasking, {catalog_query_});
}

void MaskingStage::on_frontend(FrontendMessage& m) {
  if (m.verdict != Verdict::Fail && holds_input()) {
    // A COPY in a transaction block of pgwarden's own: whatever follows (refused or not) waits
    // until the block is closed, and is judged then.
    m.verdict = Verdict::Defer;
    return;
  }
  const MaskProfile* p = profile();
  if (p == nullptr) return;
  if (!p->columns.empty()) {
    forget_reads(m);  // whatever becomes of it, an earlier statement's reads no longer apply
    // A statement held for approval is checked now: an approval is no licence to copy a
    // masked value out.
    if (m.verdict == Verdict::Hold) refuse_copying(m, *p);
  }
  if (m.verdict != Verdict::Forward) return;
  send_catalog_query();
  constexpr policy::ClassSet kCopyWithOptions = policy::bit(policy::StatementClass::CopyTo) |
                                                policy::bit(policy::StatementClass::CopyOptions);
  if (p->scans() && m.decision != nullptr &&
      (m.decision->classes & kCopyWithOptions) == kCopyWithOptions) {
    m.refuse(pr::sqlstate::kInsufficientPrivilege,
             "pgwarden: COPY TO with DELIMITER, QUOTE, ESCAPE or FORCE_QUOTE cannot be masked by "
             "masking profile \"" +
                 p->name + "\"; use the default format");
    return;
  }
  if (!p->columns.empty() && m.decision != nullptr &&
      (m.decision->classes & policy::bit(policy::StatementClass::CopyTo)) != 0 &&
      !prepare_copy(m, *p)) {
    return;  // refused
  }
  if (!p->columns.empty() && m.view.type == pr::fe::kFunctionCall &&
      policy::fast_path_function(m.view.function) == nullptr) {
    // A fast-path call has no SQL to read: what it computes from is out of sight (libpq's
    // large-object calls read no column).
    m.refuse(pr::sqlstate::kInsufficientPrivilege,
             "pgwarden: fast-path function calls are refused while the column rules of masking "
             "profile \"" +
                 p->name + "\" apply; call the function in SQL");
    return;
  }
  if (!p->columns.empty() && refuse_copying(m, *p)) return;
  if (m.view.type == pr::fe::kExecute && !host_.model().execute_described(m.view)) {
    // Nobody described what this Execute runs: ask the server, right before it.
    std::basic_string<std::byte> d;
    pr::append_describe(d, 'P', m.view.name);
    host_.send_own(d, kOwnerMasking);
  }
}

// A statement held for approval was judged without the classes reaching this stage: after an
// approved one, the masked columns are read again (held statements are rare; DDL is what holds).
void MaskingStage::on_held_decided(FrontendMessage& m, pr::Request* r) {
  pending_ = std::move(held_reads_);
  held_reads_.reset();
  remember_reads(m, r);  // approved: what it reads, as for any statement that went upstream
  if (m.verdict != Verdict::Refuse) catalog_changed();
}

void MaskingStage::on_frontend_done(FrontendMessage& m, pr::Request* r) {
  remember_reads(m, r);
  if (copy_ && copy_->request == 0 && m.view.type == pr::fe::kQuery) {
    if (r != nullptr && m.verdict == Verdict::Forward) {
      copy_->request = r->id;
    } else {
      // Refused after all (a full recording): its description is not needed, and pgwarden's
      // block around it is closed.
      if (copy_->wrapped) {
        std::basic_string<std::byte> commit;
        pr::append_query(commit, "COMMIT");
        const pr::Request* c = host_.send_own(commit, kOwnerMasking);
        copy_commit_id_ = c != nullptr ? c->id : 0;
      }
      copy_.reset();
    }
  }
  if (m.decision == nullptr || (m.decision->classes & kCatalogChanging) == 0) return;
  if (m.verdict == Verdict::Forward || m.verdict == Verdict::Replace) catalog_changed();
}

// Replies to this stage's own requests: the catalog query, and Describes sent before Executes.
void MaskingStage::on_own_reply(BackendMessage& m) {
  const pr::Request& r = *m.request();
  m.verdict = Verdict::Drop;
  if (r.id == copy_commit_id_) return;  // the COMMIT that ends a COPY's own block
  if (!catalog_batch_.contains(r.id)) {
    if (r.kind == pr::RequestKind::DescribePortal) {
      // Its error stands for the Execute's (which the server now skips): the client sees it.
      if (m.type == pr::be::kErrorResponse) m.verdict = Verdict::Forward;
      return;
    }
    on_copy_describe(m);
    return;
  }
  switch (m.type) {
    case pr::be::kDataRow: {
      // Three text columns: table OID, column number, rule index.
      std::string_view p = chars(m.whole, 7);
      long long v[3] = {0, 0, 0};
      for (long long& x : v) {
        if (p.size() < 4) return;
        std::uint32_t len = 0;
        for (int i = 0; i < 4; ++i) len = (len << 8) | static_cast<unsigned char>(p[i]);
        p.remove_prefix(4);
        if (len > p.size()) return;
        std::from_chars(p.data(), p.data() + len, x);
        p.remove_prefix(len);
      }
      const MaskProfile* prof = profile();
      if (prof != nullptr && building_ && v[2] >= 0 &&
          static_cast<std::size_t>(v[2]) < prof->columns.size()) {
        const auto table = static_cast<std::uint32_t>(v[0]);
        const policy::MaskAction action = prof->columns[static_cast<std::size_t>(v[2])].action;
        building_->action_of.emplace(
            policy::MaskedAttrs::key(table, static_cast<std::int16_t>(v[1])), action);
        // Attribute 0 is the whole row (SELECT t FROM t): it holds the masked column too.
        building_->action_of.emplace(policy::MaskedAttrs::key(table, 0), action);
      }
      return;
    }
    case pr::be::kErrorResponse: {
      const auto e = pr::read_error(m.whole);
      if (e && e->sqlstate == "25P02") {
        catalog_due_ = true;  // the client's transaction had failed: ask again later
        return;
      }
      catalog_error_ = e ? e->message : std::string("unreadable error");
      return;
    }
    case pr::be::kReadyForQuery:
      break;
    default:
      return;
  }
  catalog_pending_ = false;
  if (!catalog_error_.empty()) {
    // The server's text stays in pgwarden's log (masked by the profile): it is not the client's.
    const MaskProfile* prof = profile();
    const std::string_view why = prof != nullptr ? for_record(catalog_error_) : "";
    PGW_WARN("session %016llx: masking: cannot resolve masked columns: %.*s",
             static_cast<unsigned long long>(host_.session_id()), static_cast<int>(why.size()),
             why.data());
    m.verdict = Verdict::Fail;
    m.sqlstate = pr::sqlstate::kInternalError;
    m.message =
        "pgwarden: cannot resolve the columns the masking rules name (the gateway log has "
        "details); the session ends so that no value goes out unmasked";
    return;
  }
  if (catalog_due_) return;  // the rules changed meanwhile: this answer is already stale
  attrs_ = std::shared_ptr<const policy::MaskedAttrs>(std::move(building_));
  attrs_current_ = true;
  plan_valid_ = false;
  (*host_.core().catalog)[cache_key()] = CatalogEntry{attrs_, host_.core().now_ns};
}

const policy::ResultPlan& MaskingStage::plan(const pr::ResultShape& shape, const MaskProfile& p,
                                             const pr::Request* r) {
  const std::uint64_t key =
      policy_id_ * 31 + reinterpret_cast<std::uintptr_t>(attrs_.get()) + (resolved() ? 1 : 0);
  auto [reads, index] = p.columns.empty() ? std::pair<Reads, std::size_t>{} : current_reads(r);
  if (shape.shape == nullptr || !resolved()) {
    // Unknown shape, or column rules not resolved yet: every value handled blind.
    plan_valid_ = false;
    plan_.columns.clear();
    plan_.known = false;
    plan_.active = true;
    return plan_;
  }
  const std::string_view rd = chars(shape.row_description);
  if (plan_valid_ && plan_key_ == key && rd == plan_rd_ && reads == plan_reads_ &&
      index == plan_index_) {
    return plan_;
  }
  plan_rd_.assign(rd);
  plan_key_ = key;
  plan_valid_ = true;
  plan_reads_ = reads;
  plan_index_ = index;
  computed_ = reads ? policy::computed_rules(p, (*reads)[index]) : policy::ComputedRules{};
  if (!policy::build_plan(p, attrs_.get(), shape.row_description, {}, plan_,
                          computed_.active() ? &computed_ : nullptr)) {
    plan_.columns.clear();
    plan_.known = false;
    plan_.active = true;
  }
  return plan_;
}

void MaskingStage::replace(BackendMessage& m) {
  ++host_.core().stats->masked;
  m.verdict = Verdict::Replace;
  m.out = out_;
}

void MaskingStage::mask_row(BackendMessage& m, const MaskProfile& p) {
  const policy::ResultPlan& pl = plan(host_.model().current_result(), p, m.request());
  if (host_.core().masker->mask_row(p, pl, m.whole, out_)) replace(m);
}

void MaskingStage::mask_copy_data(BackendMessage& m, const MaskProfile& p) {
  const bool binary = host_.model().copy_format() == 1;
  std::string_view payload = chars(m.whole, 5);
  bool changed = copy_rules_ && mask_copy_fields(m, payload);
  if (m.verdict == Verdict::Fail) return;
  if (p.scans()) {
    const bool found = binary
                           ? host_.core().masker->mask_binary_copy(p, payload, copy_header_, text_)
                           : host_.core().masker->mask_text(p, payload, text_);
    if (found) {
      payload = text_;
      changed = true;
    }
  }
  if (changed) {
    if (payload.data() != text_.data()) text_.assign(payload);
    with_body(out_, pr::be::kCopyData, text_);
    replace(m);
  }
}

// NotificationResponse: pid, channel, payload. The payload is free text.
void MaskingStage::mask_notification(BackendMessage& m, const MaskProfile& p) {
  const std::string_view body = chars(m.whole, 5);
  if (body.size() < 6) return;
  const std::size_t channel_end = body.find('\0', 4);
  if (channel_end == std::string_view::npos) return;
  std::string_view payload = body.substr(channel_end + 1);
  if (!payload.empty() && payload.back() == '\0') payload.remove_suffix(1);
  if (!host_.core().masker->mask_text(p, payload, text_)) return;
  std::string b(body.substr(0, channel_end + 1));
  b += text_;
  b.push_back('\0');
  with_body(out_, pr::be::kNotificationResponse, b);
  replace(m);
}

// ParameterStatus: a setting's value can carry anything a statement put there (application_name
// set from a table, say): findings are masked like free text.
void MaskingStage::mask_parameter(BackendMessage& m, const MaskProfile& p) {
  const std::string_view body = chars(m.whole, 5);
  const std::size_t name_end = body.find('\0');
  if (name_end == std::string_view::npos) return;
  // The server's own settings carry no data (and clients parse some of them).
  static constexpr std::string_view kServer[] = {"client_encoding",
                                                 "DateStyle",
                                                 "default_transaction_read_only",
                                                 "in_hot_standby",
                                                 "integer_datetimes",
                                                 "IntervalStyle",
                                                 "is_superuser",
                                                 "server_encoding",
                                                 "server_version",
                                                 "session_authorization",
                                                 "standard_conforming_strings",
                                                 "TimeZone"};
  for (const std::string_view n : kServer) {
    if (body.substr(0, name_end) == n) return;
  }
  std::string_view value = body.substr(name_end + 1);
  if (!value.empty() && value.back() == '\0') value.remove_suffix(1);
  if (!host_.core().masker->mask_text(p, value, text_)) return;
  std::string b(body.substr(0, name_end + 1));
  b += text_;
  b.push_back('\0');
  with_body(out_, pr::be::kParameterStatus, b);
  replace(m);
}

// FunctionCallResponse: one value of a type pgwarden does not know. A finding makes it NULL.
void MaskingStage::mask_function_result(BackendMessage& m, const MaskProfile& p) {
  if (m.whole.size() < 9) return;
  const auto len = static_cast<std::int32_t>(pr::read_u32(m.whole.data() + 5));
  if (len < 0 || !p.scans()) return;
  const std::string_view value = chars(m.whole, 9);
  if (!host_.core().masker->mask_text(p, value, text_)) return;
  out_.clear();
  out_.push_back(static_cast<std::byte>(pr::be::kFunctionCallResponse));
  put_u32(out_, 8);
  put_u32(out_, 0xffffffffu);
  replace(m);
}

void MaskingStage::release_scratch() noexcept {
  if (out_.capacity() > kKeepBytes) decltype(out_)().swap(out_);
  if (text_.capacity() > kKeepBytes) decltype(text_)().swap(text_);
}

void MaskingStage::on_backend(BackendMessage& m) {
  const pr::Request* r = m.request();
  if (r != nullptr && r->origin == pr::Origin::Gateway && r->owner == kOwnerMasking) {
    on_own_reply(m);
    return;
  }
  // pgwarden's block around a COPY is closed whatever became of the profile meanwhile.
  if (m.type == pr::be::kReadyForQuery && copy_ && copy_->wrapped && r != nullptr &&
      copy_->request == r->id) {
    end_copy_block(m);
    return;
  }
  const MaskProfile* p = profile();
  if (p == nullptr || m.verdict != Verdict::Forward) return;
  switch (m.type) {
    case pr::be::kDataRow:
      mask_row(m, *p);
      return;
    case pr::be::kErrorResponse:
    case pr::be::kNoticeResponse:
      if (m.type == pr::be::kErrorResponse && copy_error(m, *p)) return;
      if (!p->columns.empty() && withhold_error(m, *p)) return;
      if (host_.core().masker->mask_error(*p, m.whole, out_)) replace(m);
      return;
    case pr::be::kNotificationResponse:
      mask_notification(m, *p);
      return;
    case pr::be::kFunctionCallResponse:
      mask_function_result(m, *p);
      return;
    case pr::be::kParameterStatus:
      mask_parameter(m, *p);
      return;
    case pr::be::kCopyOutResponse:
      copy_rules_ = false;
      if (!p->columns.empty() && copy_ && m.request() != nullptr &&
          copy_->request == m.request()->id && copy_->described && !copy_->failed) {
        start_copy(m, *p);
      } else if (!p->columns.empty()) {
        // The statement check refuses COPY TO for such callers; this is the backstop (a COPY
        // the classifier did not see, e.g. inside a function).
        m.verdict = Verdict::Fail;
        m.sqlstate = pr::sqlstate::kInsufficientPrivilege;
        m.message = "pgwarden: COPY TO cannot be masked by the column rules of masking profile \"" +
                    p->name + "\"; use SELECT";
      }
      copy_header_ = true;  // a binary COPY starts with its file header
      return;
    case pr::be::kCopyData:
      mask_copy_data(m, *p);
      return;
    case pr::be::kReadyForQuery:
      // Outside a transaction block every portal is gone (they end with their transaction).
      if (m.whole.size() > 5 && static_cast<char>(m.whole[5]) == 'I' && m.request() != nullptr) {
        portals_.ended(m.request()->id);
      }
      return;
    default:
      return;
  }
}

std::string_view MaskingStage::for_record(std::string_view text, std::uint64_t judged) {
  const MaskProfile* p = profile();
  if (p == nullptr || !p->scans()) return text;
  // A statement the policy stage has just judged may be known free of every built-in detector's
  // shape by its own (policy::shape_free_of_builtin_pii): no scan then, unless custom detectors.
  const policy::PolicyEngine* engine = host_.core().engine;
  if (!p->detectors->has_custom() && engine != nullptr && judged != 0 &&
      engine->last_free_of_builtin_pii(judged)) {
    return text;
  }
  return host_.core().masker->mask_text(*p, text, text_) ? std::string_view(text_) : text;
}

}  // namespace pgwarden::core
