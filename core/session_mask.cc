// The masking half of Session: every DataRow, COPY row, error and notice the caller's masking
// profile applies to goes through the core's Masker before the client (and the recording) sees
// it; rows needing no change are forwarded untouched from the receive buffer. Which columns a
// DataRow has comes from the RowDescription that describes it (ResultTracker follows the
// pipeline); which columns are masked by name comes from a catalog query of pgwarden's own,
// sent upstream before the client's next request whenever it is due (session start, a reload,
// DDL) and answered without the client seeing it.
#include <charconv>

#include "core/log.h"
#include "core/session.h"
#include "core/worker.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
using pr::Next;

namespace {

constexpr std::int64_t kCatalogTtlNs = 30'000'000'000;  // a core re-reads after 30 s

// Statements after which the masked columns are read from the catalog again.
constexpr policy::ClassSet kCatalogChanging =
    policy::bit(policy::StatementClass::Ddl) | policy::bit(policy::StatementClass::Drop) |
    policy::bit(policy::StatementClass::Alter) | policy::bit(policy::StatementClass::SelectInto) |
    policy::bit(policy::StatementClass::DoBlock) | policy::bit(policy::StatementClass::DynamicSql) |
    policy::bit(policy::StatementClass::Utility);

std::basic_string<std::byte> with_body(char type, std::string_view body) {
  std::basic_string<std::byte> out;
  out.push_back(static_cast<std::byte>(type));
  const auto len = static_cast<std::uint32_t>(body.size() + 4);
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::byte>((len >> s) & 0xff));
  out.append(reinterpret_cast<const std::byte*>(body.data()), body.size());
  return out;
}

}  // namespace

void Session::update_masking(const policy::Policy& policy, std::string_view who,
                             const std::vector<std::string>& groups) {
  const policy::MaskProfile* m = policy.mask_profile(who, groups);
  mask_exempt_ = m != nullptr && m->exempt ? m->name : std::string();
  if (m != nullptr && (m->exempt || (!m->scans() && m->columns.empty()))) m = nullptr;
  mask_ = m;
  if (m == nullptr) {
    results_.reset();
    masked_attrs_.reset();
    catalog_due_ = false;
    catalog_query_.clear();
    return;
  }
  if (results_ == nullptr) results_ = std::make_unique<policy::ResultTracker>();
  std::string query = m->catalog_query();
  if (query == catalog_query_) return;
  // Until the new rules are resolved, the old resolution stays (it masks what it masked).
  catalog_query_ = std::move(query);
  catalog_due_ = !catalog_query_.empty();
  if (!catalog_due_) {
    masked_attrs_.reset();
    return;
  }
  const auto it = w_.catalog_cache().find(catalog_cache_key());
  if (it != w_.catalog_cache().end() && w_.now_ns() - it->second.resolved_ns < kCatalogTtlNs) {
    masked_attrs_ = it->second.attrs;
    catalog_due_ = false;
  }
}

// The profile in force now; picks up a reloaded policy (the old profile may be gone).
const policy::MaskProfile* Session::masking_now() {
  const policy::Policy* pol = w_.policy();
  if (pol == nullptr) {
    mask_ = nullptr;
    results_.reset();
    return nullptr;
  }
  if (pol->id() != rule_policy_id_) current_rule(*pol);
  return mask_;
}

std::string Session::catalog_cache_key() const {
  return (database_.empty() ? start_database_ : database_) + '\n' + catalog_query_;
}

void Session::catalog_changed(policy::ClassSet classes) {
  if (mask_ == nullptr || catalog_query_.empty() || (classes & kCatalogChanging) == 0) return;
  catalog_due_ = true;
  w_.catalog_cache().erase(catalog_cache_key());
}

// Sends the catalog query ahead of the client's next request, when the server is between
// requests outside a transaction block (so its reply cannot disturb the client's).
void Session::maybe_resolve_catalog() {
  if (!catalog_due_ || catalog_pending_ || mask_ == nullptr || replies_pending_ != 0 ||
      extended_open_ || holding_ || !denials_.empty() || tx_status_ != 'I') {
    return;
  }
  std::basic_string<std::byte> q;
  pr::append_query(q, catalog_query_);
  queue_copy(Peer::Upstream, q);
  catalog_due_ = false;
  catalog_pending_ = true;
  catalog_building_ = std::make_unique<policy::MaskedAttrs>();
  catalog_error_.clear();
}

// The catalog query's replies: read, never forwarded. Asynchronous messages that arrive
// meanwhile (notifications, parameter changes, notices) are the client's.
Next Session::on_catalog_reply(const pr::Fragment& f) {
  if (f.type == pr::be::kNotificationResponse || f.type == pr::be::kParameterStatus ||
      f.type == pr::be::kNoticeResponse) {
    forward(Peer::Client, f, be_);
    return Next::Continue;
  }
  if (f.type == pr::be::kDataRow || f.type == pr::be::kErrorResponse) {
    const pr::Bytes whole = backend_whole(f);
    if (whole.empty()) return Next::Continue;
    if (f.type == pr::be::kErrorResponse) {
      const auto e = pr::read_error(whole);
      catalog_error_ = e ? e->message : std::string("unreadable error");
      return Next::Continue;
    }
    // Three text columns: table OID, column number, rule index.
    std::string_view p(reinterpret_cast<const char*>(whole.data()) + 7, whole.size() - 7);
    long long v[3] = {0, 0, 0};
    for (long long& x : v) {
      if (p.size() < 4) return Next::Continue;
      std::uint32_t len = 0;
      for (int i = 0; i < 4; ++i) len = (len << 8) | static_cast<unsigned char>(p[i]);
      p.remove_prefix(4);
      if (len > p.size()) return Next::Continue;
      std::from_chars(p.data(), p.data() + len, x);
      p.remove_prefix(len);
    }
    const policy::MaskProfile* m = masking_now();
    if (m != nullptr && v[2] >= 0 && static_cast<std::size_t>(v[2]) < m->columns.size()) {
      catalog_building_->action_of.emplace(
          policy::MaskedAttrs::key(static_cast<std::uint32_t>(v[0]),
                                   static_cast<std::int16_t>(v[1])),
          m->columns[static_cast<std::size_t>(v[2])].action);
    }
    return Next::Continue;
  }
  if (f.type != pr::be::kReadyForQuery || !f.last) return Next::Continue;
  catalog_pending_ = false;
  if (!catalog_error_.empty()) {
    PGW_WARN("session %016llx: masking: cannot resolve masked columns: %s",
             static_cast<unsigned long long>(session_id_), catalog_error_.c_str());
    fail(pr::sqlstate::kInternalError,
         "pgwarden: cannot resolve the columns the masking rules name (" + catalog_error_ +
             "); the session ends so that no value goes out unmasked");
    return Next::Stop;
  }
  masked_attrs_ = std::shared_ptr<const policy::MaskedAttrs>(std::move(catalog_building_));
  w_.catalog_cache()[catalog_cache_key()] = Worker::CatalogEntry{masked_attrs_, w_.now_ns()};
  return Next::Continue;
}

// Describe, Sync, Close and (recording off) Execute while masking applies: read whole for the
// result tracker, then forwarded.
Next Session::on_result_control(const pr::Fragment& f) {
  const bool in_place = f.first && f.last && f.offset == 0;
  const pr::Bytes whole = in_place ? f.bytes : fe_msg_.add(f, fe_.held_prefix());
  if (whole.empty()) return Next::Continue;
  if (results_ != nullptr) results_->on_frontend(whole);
  forward_whole(Peer::Upstream, f, whole, fe_);
  return Next::Continue;
}

// Backend messages while masking applies. True when the message was handled here (`next` says
// how to go on); false to carry on as without masking.
bool Session::on_backend_masked(const pr::Fragment& f, Next& next) {
  const policy::MaskProfile* m = masking_now();
  if (m == nullptr || results_ == nullptr) return false;
  next = Next::Continue;
  switch (f.type) {
    case pr::be::kDataRow: {
      const pr::Bytes whole = backend_whole(f);
      if (whole.empty()) return true;
      const policy::ResultPlan& plan = results_->current(*m, masked_attrs_.get(), rule_policy_id_);
      const bool changed = w_.masker().mask_row(*m, plan, whole, mask_out_);
      const pr::Bytes out = changed ? pr::Bytes(mask_out_) : whole;
      if (rec_ != nullptr && rows_recorded_ < w_.config().record_rows) record_row(out);
      if (changed) {
        ++w_.mutable_stats().masked;
        queue_copy(Peer::Client, out);
      } else {
        forward_whole(Peer::Client, f, whole, be_);
      }
      return true;
    }
    case pr::be::kRowDescription: {
      const pr::Bytes whole = backend_whole(f);
      if (whole.empty()) return true;
      results_->on_backend(f.type, whole);
      forward_whole(Peer::Client, f, whole, be_);
      return true;
    }
    case pr::be::kErrorResponse:
    case pr::be::kNoticeResponse: {
      pr::Bytes whole = backend_whole(f);
      if (whole.empty()) return true;
      if (w_.masker().mask_error(*m, whole, mask_out_)) {
        ++w_.mutable_stats().masked;
        whole = mask_out_;
      }
      if (f.type == pr::be::kNoticeResponse) {
        forward_whole(Peer::Client, f, whole, be_);
        return true;
      }
      results_->on_backend(f.type, whole);
      next = on_backend_error(f, whole);
      return true;
    }
    case pr::be::kCopyOutResponse: {
      const pr::Bytes whole = backend_whole(f);
      if (whole.empty()) return true;
      if (!m->columns.empty()) {
        // The statement check refuses COPY TO for such callers; this is the backstop (a COPY
        // the classifier did not see, e.g. inside a function).
        fail(pr::sqlstate::kInsufficientPrivilege,
             "pgwarden: COPY TO cannot be masked by the column rules of masking profile \"" +
                 m->name + "\"; use SELECT");
        next = Next::Stop;
        return true;
      }
      copy_binary_ = whole.size() > 5 && whole[5] == std::byte{1};
      forward_whole(Peer::Client, f, whole, be_);
      return true;
    }
    case pr::be::kCopyData: {
      if (rec_ != nullptr) record_backend(f);  // counts the COPY volume
      const pr::Bytes whole = backend_whole(f);
      if (whole.empty()) return true;
      const std::string_view body(reinterpret_cast<const char*>(whole.data()) + 5,
                                  whole.size() - 5);
      if (w_.masker().mask_text(*m, body, mask_text_, copy_binary_)) {
        ++w_.mutable_stats().masked;
        queue_copy(Peer::Client, with_body(pr::be::kCopyData, mask_text_));
      } else {
        forward_whole(Peer::Client, f, whole, be_);
      }
      return true;
    }
    case pr::be::kNoData:
    case pr::be::kCommandComplete:
    case pr::be::kPortalSuspended:
    case pr::be::kEmptyQueryResponse:
    case pr::be::kReadyForQuery:
      if (f.last) results_->on_backend(f.type, {});
      return false;
    default:
      return false;
  }
}

// Text going into the recording (statements, parameters): the caller's content detectors
// applied, as to what the client receives.
std::string_view Session::masked_for_record(std::string_view text) {
  const policy::MaskProfile* m = masking_now();
  if (m == nullptr || !m->scans()) return text;
  return w_.masker().mask_text(*m, text, mask_text_) ? std::string_view(mask_text_) : text;
}

}  // namespace pgwarden::core
