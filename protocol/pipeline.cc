#include "protocol/pipeline.h"

#include <bit>
#include <cstring>

#include "protocol/message_types.h"

namespace pgwarden::protocol {
namespace {
constexpr std::size_t kKeepTagBytes = 1024;  // a slot keeps a buffer this large for its tag

// `word` (lower-case letters) occurs in `s`, in any case. Eight bytes at a time: only where a
// byte is the word's first letter (in either case) is the rest compared.
bool contains_ci(std::string_view s, std::string_view word) {
  const std::size_t n = word.size();
  if (n == 0 || n > s.size()) return false;
  const std::size_t last = s.size() - n;  // the last place the word can start
  auto matches_at = [&](std::size_t i) {
    for (std::size_t k = 0; k < n; ++k) {
      if ((s[i + k] | 0x20) != word[k]) return false;
    }
    return true;
  };
  constexpr std::uint64_t kOnes = 0x0101010101010101ull;
  constexpr std::uint64_t kHigh = 0x8080808080808080ull;
  const std::uint64_t first = kOnes * static_cast<unsigned char>(word[0]);
  std::size_t i = 0;
  for (; i + 8 <= last + 1; i += 8) {
    std::uint64_t x;
    std::memcpy(&x, s.data() + i, 8);
    x = (x | (kOnes * 0x20)) ^ first;               // a zero byte where the first letter is
    std::uint64_t hits = (x - kOnes) & ~x & kHigh;  // may flag a byte after a real hit too
    while (hits != 0) {
      const auto bit = static_cast<std::size_t>(__builtin_ctzll(hits));
      const std::size_t at =
          i + (std::endian::native == std::endian::little ? bit / 8 : 7 - bit / 8);
      if (matches_at(at)) return true;
      hits &= hits - 1;
    }
  }
  for (; i <= last; ++i) {
    if (matches_at(i)) return true;
  }
  return false;
}

// COPY FROM STDIN can only be a statement whose text names COPY, FROM, and STDIN or STDOUT, which
// PostgreSQL's grammar takes for the client in either direction (COPY t FROM STDOUT reads from
// the client). Keywords cannot be escaped, and neither functions nor PREPARE can run COPY with
// the client.
bool may_copy_in(std::string_view sql) {
  return contains_ci(sql, "copy") && contains_ci(sql, "from") &&
         (contains_ci(sql, "stdin") || contains_ci(sql, "stdout"));
}

std::string_view body_cstring(Bytes whole, std::size_t& pos) {
  if (pos >= whole.size()) return {};
  const auto* s = reinterpret_cast<const char*>(whole.data() + pos);
  const std::size_t len = strnlen(s, whole.size() - pos);
  pos += len + 1;
  return {s, len};
}

// FATAL or PANIC in an ErrorResponse's non-localized ('V') or localized ('S') severity.
bool is_fatal(Bytes whole) {
  std::size_t pos = 5;
  bool fatal = false;
  while (pos < whole.size() && whole[pos] != std::byte{0}) {
    const char code = static_cast<char>(whole[pos++]);
    const std::string_view v = body_cstring(whole, pos);
    if (code == 'V') return v == "FATAL" || v == "PANIC";
    if (code == 'S') fatal = v == "FATAL" || v == "PANIC";
  }
  return fatal;
}

bool extended(RequestKind k) {
  return k != RequestKind::Query && k != RequestKind::Sync && k != RequestKind::FunctionCall;
}

}  // namespace

const char* request_kind_name(RequestKind k) {
  switch (k) {
    case RequestKind::Query:
      return "Query";
    case RequestKind::Parse:
      return "Parse";
    case RequestKind::Bind:
      return "Bind";
    case RequestKind::DescribeStatement:
      return "Describe statement";
    case RequestKind::DescribePortal:
      return "Describe portal";
    case RequestKind::Execute:
      return "Execute";
    case RequestKind::CloseStatement:
      return "Close statement";
    case RequestKind::ClosePortal:
      return "Close portal";
    case RequestKind::Sync:
      return "Sync";
    case RequestKind::FunctionCall:
      return "FunctionCall";
  }
  return "?";
}

PipelineModel::PipelineModel(Limits limits) : limits_(limits), ring_(16), mask_(15) {
  query_shape_ = ShapeRef(new_shape());
}

PipelineModel::~PipelineModel() {
  ring_.clear();
  query_shape_.reset();
  last_shape_.reset();
  for (Shape* s : shapes_) delete s;
}

Shape* PipelineModel::new_shape() {
  Shape* s = free_;
  if (s != nullptr) {
    free_ = s->next_free_;
  } else {
    s = new Shape;
    s->owner_ = this;
    shapes_.push_back(s);
  }
  s->next_free_ = nullptr;
  s->state_ = Shape::State::Pending;
  ++s->version_;
  return s;
}

void PipelineModel::release(Shape* s) noexcept {
  s->rd_.clear();
  if (s->rd_.capacity() > 4096) s->rd_.shrink_to_fit();
  s->next_free_ = free_;
  free_ = s;
}

Request& PipelineModel::push(RequestKind kind, Origin origin) {
  if (count_ == mask_ + 1) {
    // The slots move, the requests in them do not.
    std::vector<std::unique_ptr<Request>> bigger(2 * count_);
    for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move(ring_[(head_ + i) & mask_]);
    ring_ = std::move(bigger);
    mask_ = ring_.size() - 1;
    head_ = 0;
  }
  std::unique_ptr<Request>& slot = ring_[(head_ + count_) & mask_];
  if (slot == nullptr) slot = std::make_unique<Request>();
  Request& r = *slot;
  ++count_;
  if (origin == Origin::Gateway) ++own_;
  // Reset field by field: the slot's strings keep their buffers for the next request.
  r.id = next_id_++;
  r.kind = kind;
  r.origin = origin;
  r.state = skipping_ && kind != RequestKind::Sync ? RequestState::Skipped : RequestState::Queued;
  r.owner = 0;
  r.failed = r.may_copy_in = r.in_result = r.described = r.prelude = false;
  r.copy = Request::kCopyNone;
  r.results = 0;
  r.rows = 0;
  r.name.clear();
  r.tag[0] = r.tag[1] = 0;
  r.sent_ns = 0;
  r.tag_text.clear();
  if (r.tag_text.capacity() > kKeepTagBytes) std::string().swap(r.tag_text);
  return r;
}

Request* PipelineModel::current() noexcept {
  for (std::size_t i = 0; i < count_; ++i) {
    Request& r = at(i);
    if (r.state != RequestState::Queued) continue;
    return r.origin == Origin::Local ? nullptr : &r;
  }
  return nullptr;
}

bool PipelineModel::Names::may_copy(std::string_view name) const {
  if (copies == 0 && !overflowed) return false;  // the common case: no name runs COPY
  const auto it = map.find(name_key(name));
  return it != map.end() ? it->second.copy : overflowed;
}

void PipelineModel::set_name(Names& names, std::string_view name, bool copy,
                             std::uint64_t created) {
  const std::string_view key = name_key(name);
  auto it = names.map.find(key);
  if (it == names.map.end()) {
    if (names.map.size() >= limits_.max_names) {
      // Memory stays bounded: forget them all, and take any name not kept for the worst.
      names.map.clear();
      names.copies = 0;
      names.overflowed = true;
    }
    it = names.map.emplace(std::string(key), Named{}).first;
  }
  names.copies += static_cast<std::size_t>(copy) - static_cast<std::size_t>(it->second.copy);
  it->second = Named{copy, created};
}

void PipelineModel::forget_name(Names& names, std::string_view name) {
  const auto it = names.map.find(name_key(name));
  if (it == names.map.end()) return;
  names.copies -= it->second.copy ? 1 : 0;
  names.map.erase(it);
}

bool PipelineModel::portal_may_copy_in(std::string_view portal) const {
  return portal.empty() ? unnamed_portal_copy_ : portals_.may_copy(portal);
}

PipelineModel::Fate PipelineModel::fate(const FrontendView& v) const noexcept {
  switch (v.type) {
    case fe::kTerminate:
      return Fate::Terminate;
    case fe::kCopyData:
      return copy_in_ ? Fate::CopyData : Fate::Ignored;
    case fe::kCopyDone:
    case fe::kCopyFail:
      return copy_in_ ? Fate::CopyEnd : Fate::Ignored;
    case fe::kFlush:
      return Fate::Ignored;
    case fe::kSync:
      return copy_in_ ? Fate::Ignored : Fate::Request;
    default:
      return copy_in_ ? Fate::Violation : Fate::Request;
  }
}

bool PipelineModel::runs_in_flight() const noexcept {
  for (std::size_t i = 0; i < count_; ++i) {
    const RequestKind k = at(i).kind;
    if (k == RequestKind::Query || k == RequestKind::Execute || k == RequestKind::FunctionCall) {
      return true;
    }
  }
  return false;
}

bool PipelineModel::execute_described(const FrontendView& execute) const noexcept {
  if (last_portal_ != execute.name || !last_shape_) return false;
  return last_kind_ == RequestKind::DescribePortal || last_kind_ == RequestKind::Execute;
}

Request* PipelineModel::commit(const FrontendView& v, Origin origin, std::uint8_t owner,
                               bool prelude) {
  switch (fate(v)) {
    case Fate::Terminate:
      terminated_ = true;
      return nullptr;
    case Fate::Ignored:
    case Fate::CopyData:
    case Fate::Violation:
      return nullptr;
    case Fate::CopyEnd:
      copy_in_ = false;
      for (std::size_t i = 0; i < count_; ++i) {
        Request& r = at(i);
        if (r.copy != Request::kCopyIn) continue;
        // A Query may hold another COPY FROM STDIN; an Execute runs one statement.
        r.copy = r.kind == RequestKind::Query && r.state == RequestState::Queued
                     ? Request::kCopyMaybe
                     : Request::kCopyNone;
        if (r.copy == Request::kCopyMaybe) barrier_ = r.id;
      }
      return nullptr;
    case Fate::Request:
      break;
  }
  RequestKind kind = RequestKind::Sync;
  switch (v.type) {
    case fe::kQuery:
      kind = RequestKind::Query;
      break;
    case fe::kParse:
      kind = RequestKind::Parse;
      break;
    case fe::kBind:
      kind = RequestKind::Bind;
      break;
    case fe::kDescribe:
      kind = v.target == 'S' ? RequestKind::DescribeStatement : RequestKind::DescribePortal;
      break;
    case fe::kExecute:
      kind = RequestKind::Execute;
      break;
    case fe::kClose:
      kind = v.target == 'S' ? RequestKind::CloseStatement : RequestKind::ClosePortal;
      break;
    case fe::kFunctionCall:
      kind = RequestKind::FunctionCall;
      break;
    default:
      break;
  }
  if (extended(kind)) batch_open_ = true;
  Request& r = push(kind, origin);
  r.owner = owner;
  const bool live = r.state == RequestState::Queued;
  r.prelude =
      prelude && live && (kind == RequestKind::Bind || kind == RequestKind::DescribeStatement);
  if (kind == RequestKind::Parse || kind == RequestKind::Bind ||
      kind == RequestKind::CloseStatement || kind == RequestKind::ClosePortal) {
    r.name.assign(name_key(v.name));
  }
  switch (kind) {
    case RequestKind::Query:
      if (live) {
        // A simple Query replaces the unnamed statement and runs in its own unnamed portal.
        unnamed_statement_copy_ = unnamed_portal_copy_ = false;
        r.may_copy_in = may_copy_in(v.text);
      }
      break;
    case RequestKind::Parse:
      if (live) {
        const bool copy = may_copy_in(v.text);
        if (v.name.empty()) {
          unnamed_statement_copy_ = copy;
        } else {
          set_name(statements_, v.name, copy, r.id);
        }
      }
      break;
    case RequestKind::Bind:
      if (live) {
        const bool copy =
            v.statement.empty() ? unnamed_statement_copy_ : statements_.may_copy(v.statement);
        if (v.name.empty()) {
          unnamed_portal_copy_ = copy;
        } else {
          set_name(portals_, v.name, copy, r.id);
        }
      }
      break;
    case RequestKind::DescribePortal:
      r.shape = ShapeRef(new_shape());
      break;
    case RequestKind::Execute:
      if (execute_described(v)) r.shape = last_shape_;
      r.may_copy_in = live && portal_may_copy_in(v.name);
      break;
    case RequestKind::CloseStatement:
      if (live) {
        if (v.name.empty()) {
          unnamed_statement_copy_ = false;
        } else {
          forget_name(statements_, v.name);
        }
      }
      break;
    case RequestKind::ClosePortal:
      if (live) {
        if (v.name.empty()) {
          unnamed_portal_copy_ = false;
        } else {
          forget_name(portals_, v.name);
        }
      }
      break;
    case RequestKind::Sync:
      batch_open_ = false;
      skipping_ = false;
      break;
    case RequestKind::DescribeStatement:
    case RequestKind::FunctionCall:
      break;
  }
  if (r.may_copy_in) {
    r.copy = Request::kCopyMaybe;
    barrier_ = r.id;
  }
  last_kind_ = kind;
  if (kind == RequestKind::DescribePortal || kind == RequestKind::Execute) {
    last_portal_.assign(v.name);
    last_shape_ = r.shape;
  } else {
    last_shape_.reset();
  }
  return &r;
}

Request& PipelineModel::commit_local(RequestKind kind) {
  return push(kind, Origin::Local);
}

void PipelineModel::skip_to_sync(std::size_t after) {
  for (std::size_t i = after + 1; i < count_; ++i) {
    Request& r = at(i);
    if (r.kind == RequestKind::Sync) return;
    if (r.state != RequestState::Queued) continue;
    r.state = RequestState::Skipped;
    if (barrier_ == r.id) barrier_ = 0;
    r.copy = Request::kCopyNone;
    name_unknown(r);
  }
  skipping_ = true;
}

void PipelineModel::name_unknown(const Request& r) {
  const bool statement = r.kind == RequestKind::Parse || r.kind == RequestKind::CloseStatement;
  const bool portal = r.kind == RequestKind::Bind || r.kind == RequestKind::ClosePortal;
  if (!statement && !portal) return;
  if (r.name.empty()) {
    (statement ? unnamed_statement_copy_ : unnamed_portal_copy_) = true;
  } else {
    set_name(statement ? statements_ : portals_, r.name, true, r.id);
  }
}

void PipelineModel::on_error(Request& r, Bytes whole, Event& ev) {
  ev.fatal = is_fatal(whole);
  r.failed = true;
  r.in_result = false;
  r.prelude = false;  // the prelude's error, or the request's own: either way, this one's
  if (r.copy == Request::kCopyIn) copy_in_ = false;
  if (barrier_ == r.id) barrier_ = 0;
  r.copy = Request::kCopyNone;
  copy_out_ = false;
  if (!extended(r.kind)) return;  // ReadyForQuery follows
  r.state = RequestState::Done;
  ev.completes = true;
  name_unknown(r);
  std::size_t index = 0;
  while (&at(index) != &r) ++index;
  skip_to_sync(index);
}

void PipelineModel::on_parameter_status(Bytes whole) {
  std::size_t pos = 5;
  const std::string_view name = body_cstring(whole, pos);
  const std::string_view value = body_cstring(whole, pos);
  if (name == "standard_conforming_strings") scs_ = value == "on";
  if (name == "client_encoding") client_encoding_.assign(value);
}

PipelineModel::Event PipelineModel::on_backend(char type, Bytes whole) {
  Event ev;
  switch (type) {
    case be::kNoticeResponse:
    case be::kNotificationResponse:
      return ev;
    case be::kParameterStatus:
      on_parameter_status(whole);
      return ev;
    default:
      break;
  }
  Request* r = current();
  ev.request = r;
  if (type == be::kErrorResponse) {
    if (r == nullptr) {
      ev.fatal = is_fatal(whole);
      if (!ev.fatal) ev.divergence = "an error that answers no request";
      return ev;
    }
    on_error(*r, whole, ev);
    return ev;
  }
  if (r == nullptr) {
    ev.divergence = "a reply to no request";
    return ev;
  }
  const RequestKind k = r->kind;
  if (r->prelude) {
    // Nothing of the request's own comes before its prelude's ParseComplete.
    if (type != be::kParseComplete) {
      ev.divergence = "a reply before the ParseComplete of pgwarden's Parse";
      return ev;
    }
    r->prelude = false;
    ev.prelude = true;
    return ev;
  }
  auto done = [&] {
    r->state = RequestState::Done;
    ev.completes = true;
    if (barrier_ == r->id) barrier_ = 0;
  };
  switch (type) {
    case be::kReadyForQuery:
      if (k != RequestKind::Sync && k != RequestKind::Query && k != RequestKind::FunctionCall) {
        break;
      }
      if (whole.size() == 6) tx_status_ = static_cast<char>(whole[5]);
      if (copy_in_) break;  // never while the server reads COPY data
      if (tx_status_ == 'I') {
        // The transaction ended: the portals made before this point are gone.
        for (auto it = portals_.map.begin(); it != portals_.map.end();) {
          if (it->second.created >= r->id) {
            ++it;
            continue;
          }
          portals_.copies -= it->second.copy ? 1 : 0;
          it = portals_.map.erase(it);
        }
      }
      done();
      return ev;
    case be::kRowDescription:
      if (k == RequestKind::DescribeStatement && r->described) {
        done();
        return ev;
      }
      if (k == RequestKind::DescribePortal) {
        Shape* s = r->shape.get();
        s->rd_.assign(reinterpret_cast<const char*>(whole.data()), whole.size());
        s->state_ = Shape::State::Rows;
        ++s->version_;
        done();
        return ev;
      }
      if (k == RequestKind::Query && !r->in_result && !copy_out_) {
        Shape* s = query_shape_.get();
        s->rd_.assign(reinterpret_cast<const char*>(whole.data()), whole.size());
        s->state_ = Shape::State::Rows;
        ++s->version_;
        r->in_result = true;
        r->rows = 0;
        return ev;
      }
      break;
    case be::kNoData:
      if (k == RequestKind::DescribeStatement && r->described) {
        done();
        return ev;
      }
      if (k == RequestKind::DescribePortal) {
        r->shape.get()->state_ = Shape::State::NoRows;
        ++r->shape.get()->version_;
        done();
        return ev;
      }
      break;
    case be::kParameterDescription:
      if (k == RequestKind::DescribeStatement && !r->described) {
        r->described = true;
        return ev;
      }
      break;
    case be::kParseComplete:
      if (k != RequestKind::Parse) break;
      done();
      return ev;
    case be::kBindComplete:
      if (k != RequestKind::Bind) break;
      done();
      return ev;
    case be::kCloseComplete:
      if (k != RequestKind::CloseStatement && k != RequestKind::ClosePortal) break;
      done();
      return ev;
    case be::kDataRow:
      if (copy_out_ || r->copy == Request::kCopyIn) break;
      if (k == RequestKind::Execute || (k == RequestKind::Query && r->in_result)) {
        ++r->rows;
        return ev;
      }
      break;
    case be::kCommandComplete:
    case be::kEmptyQueryResponse:
      if (copy_out_ || copy_in_) break;
      if (type == be::kCommandComplete) {
        std::size_t pos = 5;
        last_tag_.assign(body_cstring(whole, pos));
      }
      if (k == RequestKind::Execute) {
        done();
        return ev;
      }
      if (k == RequestKind::Query) {
        ++r->results;
        r->in_result = false;
        r->rows = 0;
        return ev;
      }
      break;
    case be::kPortalSuspended:
      if (k != RequestKind::Execute || copy_out_) break;
      done();
      return ev;
    case be::kCopyInResponse:
      if ((k != RequestKind::Execute && k != RequestKind::Query) ||
          r->copy != Request::kCopyMaybe || r->in_result || copy_out_) {
        ev.divergence = "COPY FROM STDIN from a statement that was not expected to start one";
        return ev;
      }
      r->copy = Request::kCopyIn;
      copy_in_ = true;
      if (barrier_ == r->id) barrier_ = 0;
      return ev;
    case be::kCopyOutResponse:
      if ((k != RequestKind::Execute && k != RequestKind::Query) || r->in_result || copy_out_ ||
          r->copy == Request::kCopyIn) {
        break;
      }
      copy_out_ = true;
      copy_format_ = whole.size() > 5 ? static_cast<int>(whole[5]) : 0;
      return ev;
    case be::kCopyData:
      if (!copy_out_) break;
      return ev;
    case be::kCopyDone:
      if (!copy_out_) break;
      copy_out_ = false;
      return ev;
    case be::kCopyBothResponse:
      ev.divergence = "COPY BOTH (replication) cannot be followed";
      return ev;
    case be::kFunctionCallResponse:
      if (k != RequestKind::FunctionCall || r->failed) break;
      return ev;
    default:
      break;
  }
  ev.divergence = "a reply the model did not predict";
  return ev;
}

ResultShape PipelineModel::current_result() const noexcept {
  for (std::size_t i = 0; i < count_; ++i) {
    const Request& r = at(i);
    if (r.state != RequestState::Queued) continue;
    if (r.kind == RequestKind::Query && r.in_result) {
      return {query_shape_.get(), query_shape_.get()->row_description()};
    }
    if (r.kind == RequestKind::Execute && r.shape && r.shape.get()->state() == Shape::State::Rows) {
      return {r.shape.get(), r.shape.get()->row_description()};
    }
    return {};
  }
  return {};
}

}  // namespace pgwarden::protocol
