#include "core/stages/recording_stage.h"

#include "core/log.h"
#include "core/stages/masking_stage.h"
#include "core/worker.h"
#include "policy/rules.h"
#include "policy/sqlcommenter.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;
namespace rec = pgwarden::recorder;

namespace {

// The row count at the end of a command tag ("SELECT 5", "INSERT 0 1", "UPDATE 3").
std::uint64_t tag_rows(std::string_view tag) {
  const std::size_t sp = tag.rfind(' ');
  if (sp == std::string_view::npos) return 0;
  std::uint64_t n = 0;
  for (const char c : tag.substr(sp + 1)) {
    if (c < '0' || c > '9') return 0;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

std::string_view chars(pr::Bytes b, std::size_t from) {
  return b.size() < from
             ? std::string_view()
             : std::string_view(reinterpret_cast<const char*>(b.data()) + from, b.size() - from);
}

}  // namespace

bool RecordingStage::records(char type) {
  return type == pr::fe::kQuery || type == pr::fe::kParse || type == pr::fe::kBind ||
         type == pr::fe::kExecute || type == pr::fe::kFunctionCall;
}

const char* RecordingStage::said_text(Said s) noexcept {
  switch (s) {
    case Said::Allow:
      return "allow";
    case Said::Grant:
      return "grant";
    case Said::Hold:
      return "hold";
    case Said::Deny:
      return "deny";
  }
  return "deny";
}

void RecordingStage::add_decision_fields(rec::Payload& p, const policy::Decision& d, Said said) {
  const policy::Policy* pol = host_.core().policy;
  const std::uint64_t policy_id = pol != nullptr ? pol->id() : 0;
  for (const DecisionFields& c : decision_fields_) {
    if (c.said == said && c.rule == d.rule && c.classes == d.classes && c.policy == policy_id &&
        !c.bytes.empty()) {
      p.add_fields(c.bytes);
      return;
    }
  }
  DecisionFields& c = decision_fields_[decision_fields_next_];
  decision_fields_next_ =
      static_cast<std::uint8_t>((decision_fields_next_ + 1) % std::size(decision_fields_));
  c.said = said;
  c.rule = d.rule;
  c.policy = policy_id;
  c.classes = d.classes;
  c.bytes.clear();
  rec::Payload::encode(c.bytes, rec::Field::Decision, said_text(said));
  rec::Payload::encode(c.bytes, rec::Field::Rule, d.rule != nullptr ? d.rule->name : "(no rule)");
  rec::Payload::encode(c.bytes, rec::Field::Classes, policy::class_names(d.classes));
  p.add_fields(c.bytes);
}

// A sqlcommenter comment's intent and trace context, as their own fields (masked as the text is).
void RecordingStage::add_comment_tags(rec::Payload& p, std::string_view sql) {
  const bool mcp = host_.caller().method == "mcp";
  if (!mcp && !app_tags_read_) {
    // What application_name says for the session, where the statement says nothing itself.
    app_tags_ = policy::application_tags(host_.caller().application);
    app_tags_read_ = true;
  }
  // Most statements carry no comment: nothing to parse (nor tags to build) for them.
  if (policy::comment_body(sql, mcp).empty() && (mcp || app_tags_.empty())) return;
  policy::CommentTags tags = policy::comment_tags(sql, mcp);
  if (!mcp) {
    if (tags.intent.empty()) tags.intent = app_tags_.intent;
    if (tags.traceparent.empty()) tags.traceparent = app_tags_.traceparent;
    if (tags.tracestate.empty()) tags.tracestate = app_tags_.tracestate;
  }
  if (tags.empty()) return;
  if (!tags.mcp_session.empty()) {
    p.add(rec::Field::McpSession, tags.mcp_session)
        .add(rec::Field::McpCall, tags.mcp_call)
        .add(rec::Field::JsonRpcId, tags.jsonrpc_id)
        .add(rec::Field::Tool, tags.tool);
    if (!tags.mcp_client.empty()) p.add(rec::Field::McpClient, tags.mcp_client);
    if (!tags.arguments.empty()) p.add(rec::Field::Arguments, masking_.for_record(tags.arguments));
  }
  if (!tags.intent.empty()) p.add(rec::Field::Intent, masking_.for_record(tags.intent));
  if (!tags.traceparent.empty()) p.add(rec::Field::TraceParent, tags.traceparent);
  if (!tags.tracestate.empty()) p.add(rec::Field::TraceState, tags.tracestate);
}

// A Bind's parameters, or a fast-path call's arguments: text as sent, binary as \x hex, NULL.
void RecordingStage::add_params(rec::Payload& out, const pr::FrontendView& v) {
  pr::for_each_param(v, [&](std::uint16_t, std::string_view value, bool null, bool binary) {
    if (null) {
      out.add(rec::Field::ParamNull, "");
    } else if (binary) {
      out.add_clipped(rec::Field::Param, "\\x" + rec::hex(masking_.for_record(value)));
    } else {
      out.add_clipped(rec::Field::Param, masking_.for_record(value));
    }
  });
}

std::uint32_t RecordingStage::record_statement(const FrontendMessage& m, Said said) {
  const pr::FrontendView& v = m.view;
  // The usual extended-protocol statement (Bind, Execute): an Execute of the portal just bound,
  // read with it (in the same pass of the loop: their time is one), with nothing recorded since
  // and nothing to say of its own, goes into the bind's record.
  if (v.type == pr::fe::kExecute && bind_end_ != 0 && m.decision == nullptr && !m.granted &&
      bind_ns_ == host_.core().now_ns && v.name == bind_portal_) {
    const std::uint32_t seq = seq_ + 1;  // (wraps as the counter does)
    const std::uint64_t end =
        sink_.extend_last(rec::RecordType::Bind, bind_end_, rec::Field::Executed, seq);
    bind_end_ = 0;
    if (end != 0) {
      seq_ = seq;
      if (sink_.durability() == Durability::Strict) wait_durable(end);
      return seq;
    }
  }
  rec::Payload& out = sink_.payload(host_.session_id());
  const std::uint32_t seq = ++seq_;
  out.add(rec::Field::Statement, seq);
  rec::RecordType rt = rec::RecordType::Query;
  switch (v.type) {
    case pr::fe::kQuery:
      out.add_clipped(rec::Field::Text, masking_.for_record(v.text, m.judged));
      add_comment_tags(out, v.text);
      break;
    case pr::fe::kParse:
      out.add_clipped(rec::Field::Name, v.name)
          .add_clipped(rec::Field::Text, masking_.for_record(v.text, m.judged));
      add_comment_tags(out, v.text);
      rt = rec::RecordType::Parse;
      break;
    case pr::fe::kBind:
      rt = rec::RecordType::Bind;
      out.add_clipped(rec::Field::Portal, v.name).add_clipped(rec::Field::Name, v.statement);
      add_params(out, v);
      break;
    case pr::fe::kFunctionCall:
      out.add(rec::Field::Text,
              "(fast-path call of the function with OID " + std::to_string(v.function) + ")");
      add_params(out, v);  // its arguments
      break;
    case pr::fe::kExecute:
      rt = rec::RecordType::Execute;
      out.add_clipped(rec::Field::Portal, v.name);
      break;
    default:
      break;
  }
  add_decision(out, m, said);
  if (m.granted) out.add(rec::Field::Reason, m.reason);
  const std::uint64_t end = sink_.append(rt);
  bind_end_ = 0;
  if (rt == rec::RecordType::Bind) {
    bind_end_ = end;
    bind_ns_ = host_.core().now_ns;
    bind_portal_.assign(v.name);
  }
  if (sink_.durability() == Durability::Strict) wait_durable(end);
  return seq;
}

void RecordingStage::record_refused(const FrontendMessage& m) {
  if (!sink_.has_room()) return;
  rec::Payload& r = sink_.payload(host_.session_id());
  pending_seq_ = ++seq_;
  r.add(rec::Field::Statement, pending_seq_);
  if (m.view.query) {
    r.add_clipped(rec::Field::Text, masking_.for_record(m.view.text, m.judged));
    add_comment_tags(r, m.view.text);
  }
  if (m.view.type == pr::fe::kBind) r.add_clipped(rec::Field::Name, m.view.statement);
  r.add(rec::Field::Sqlstate, m.sqlstate)
      .add_clipped(rec::Field::Reason, m.reason.empty() ? m.message : m.reason);
  add_decision(r, m, Said::Deny);
  sink_.append(rec::RecordType::Refused);
}

void RecordingStage::wait_durable(std::uint64_t end) {
  last_end_ = end;
  sink_.wait_durable(*this, end);
  if (!holding_) {
    holding_ = true;
    host_.hold_upstream();
  }
}

void RecordingStage::on_record_durable() {
  if (!holding_) return;
  if (sink_.synced() < last_end_) {
    sink_.wait_durable(*this, last_end_);
    return;
  }
  holding_ = false;
  host_.release_upstream();
}

void RecordingStage::on_frontend(FrontendMessage& m) {
  pending_seq_ = 0;
  if (!records(m.view.type)) return;
  switch (m.verdict) {
    case Verdict::Forward:
    case Verdict::Replace:
      if (!sink_.accepting()) {
        ++host_.core().stats->refused_recording;
        PGW_WARN("session %016llx: refused a statement: recording is failing (%s)",
                 static_cast<unsigned long long>(host_.session_id()), sink_.failure().c_str());
        m.refuse(pr::sqlstate::kIoError,
                 "pgwarden: statement refused because it cannot be recorded (" + sink_.failure() +
                     "); try again when recording works again");
        return;
      }
      pending_seq_ = record_statement(m, m.granted ? Said::Grant : Said::Allow);
      return;
    case Verdict::Hold:
      if (!sink_.has_room()) return;
      pending_seq_ = held_seq_ = record_statement(m, Said::Hold);
      held_since_ns_ = host_.core().now_ns;
      return;
    case Verdict::Refuse:
    case Verdict::Fail:
      record_refused(m);
      return;
    case Verdict::Drop:
    case Verdict::Defer:
      return;
  }
}

void RecordingStage::on_frontend_done(FrontendMessage& m, pr::Request* r) {
  if (!records(m.view.type) || pending_seq_ == 0 || r == nullptr) return;
  r->tag[0] = pending_seq_;
  r->tag[1] = static_cast<std::uint64_t>(host_.core().now_ns);
  pending_seq_ = 0;
}

// An approved statement runs only with its approval in the recording: who approved it is part
// of what the recording must prove.
void RecordingStage::on_held_approved(FrontendMessage& m) {
  if (sink_.accepting() && sink_.has_room()) return;
  ++host_.core().stats->refused_recording;
  const std::string why = sink_.accepting() ? "the recording's backlog is full" : sink_.failure();
  PGW_WARN("session %016llx: refused an approved statement: its approval cannot be recorded (%s)",
           static_cast<unsigned long long>(host_.session_id()), why.c_str());
  m.refuse(pr::sqlstate::kIoError,
           "pgwarden: the approved statement was refused because its approval cannot be recorded "
           "(" +
               why + "); send it again when recording works again");
}

void RecordingStage::on_held_decided(FrontendMessage& m, pr::Request* r) {
  const bool approved = m.verdict != Verdict::Refuse;
  if (sink_.has_room()) {
    rec::Payload& p = sink_.payload(host_.session_id());
    p.add(rec::Field::Statement, held_seq_)
        .add(rec::Field::Decision, approved ? "approved" : "denied")
        .add(rec::Field::Reason, m.reason)
        .add(rec::Field::DurationUs,
             static_cast<std::uint64_t>((host_.core().now_ns - held_since_ns_) / 1000));
    const std::uint64_t end = sink_.append(rec::RecordType::Approval);
    if (approved && sink_.durability() == Durability::Strict) wait_durable(end);
  }
  if (r != nullptr && held_seq_ != 0) {
    r->tag[0] = held_seq_;
    r->tag[1] = static_cast<std::uint64_t>(host_.core().now_ns);
  }
  held_seq_ = 0;
}

void RecordingStage::on_backend(BackendMessage& m) {
  const pr::Request* r = m.request();
  if (r == nullptr) return;
  if (r->origin == pr::Origin::Gateway) {
    // A Describe pgwarden sent before an Execute failed: that is the Execute's outcome (the
    // server skips the Execute; its retirement records this error for it).
    if (m.type == pr::be::kErrorResponse && m.verdict == Verdict::Forward) {
      describe_error_.assign(reinterpret_cast<const char*>(m.whole.data()), m.whole.size());
    }
    return;
  }
  switch (m.type) {
    case pr::be::kCopyData:
      copy_out_ += m.size - 5;
      return;
    case pr::be::kDataRow:
      if (rows_ != 0 && r->tag[0] != 0 && r->rows <= rows_ && !m.delivered().empty()) {
        record_row(*r, m.delivered());
      }
      return;
    case pr::be::kCommandComplete:
    case pr::be::kEmptyQueryResponse:
    case pr::be::kPortalSuspended:
    case pr::be::kErrorResponse:
    case pr::be::kFunctionCallResponse:
      record_outcome(r, m.type, m.delivered());
      return;
    default:
      return;
  }
}

void RecordingStage::on_retired(const pr::Request& r) {
  if (r.kind == pr::RequestKind::Execute && r.origin == pr::Origin::Client &&
      !describe_error_.empty()) {
    const std::string error = std::move(describe_error_);
    describe_error_.clear();
    if (r.tag[0] != 0 && r.state == pr::RequestState::Skipped) {
      record_outcome(&r, pr::be::kErrorResponse,
                     pr::Bytes(reinterpret_cast<const std::byte*>(error.data()), error.size()));
      return;
    }
  }
  if (r.tag[0] == 0 || !sink_.has_room()) return;
  if (r.state == pr::RequestState::Skipped) {
    rec::Payload& p = sink_.payload(host_.session_id());
    p.add(rec::Field::Statement, r.tag[0])
        .add(rec::Field::Tag, "(skipped)")
        .add(rec::Field::Reason,
             "an earlier message of the pipeline failed: the server skipped this one up to Sync");
    sink_.append(rec::RecordType::Outcome);
  } else if (r.origin == pr::Origin::Local && r.tag_text.size() >= 5) {
    rec::Payload& p = sink_.payload(host_.session_id());
    p.add(rec::Field::Statement, r.tag[0])
        .add(rec::Field::Sqlstate, std::string_view(r.tag_text).substr(0, 5))
        .add_clipped(rec::Field::Message, std::string_view(r.tag_text).substr(5))
        .add(rec::Field::DurationUs, std::uint64_t{0});
    sink_.append(rec::RecordType::Outcome);
  }
}

// One DataRow as the client receives it: each column's bytes, NULL as a null marker.
void RecordingStage::record_row(const pr::Request& r, pr::Bytes whole) {
  if (!sink_.has_room() || whole.size() < 7) return;
  rec::Payload& out = sink_.payload(host_.session_id());
  out.add(rec::Field::Statement, r.tag[0]);
  const std::uint16_t ncols = pr::read_u16(whole.data() + 5);
  std::size_t i = 7;
  for (std::uint16_t c = 0; c < ncols; ++c) {
    if (whole.size() - i < 4) break;
    const auto len = static_cast<std::int32_t>(pr::read_u32(whole.data() + i));
    i += 4;
    if (len < 0) {
      out.add(rec::Field::ValueNull, "");
      continue;
    }
    if (static_cast<std::size_t>(len) > whole.size() - i) break;
    out.add_clipped(rec::Field::Value, chars(whole, i).substr(0, static_cast<std::size_t>(len)));
    i += static_cast<std::size_t>(len);
  }
  sink_.append(rec::RecordType::Row);
}

// The outcome of the request the server just answered (command tag, or error), with its
// duration and COPY volume.
void RecordingStage::record_outcome(const pr::Request* r, char type, pr::Bytes whole) {
  const std::uint64_t seq = r != nullptr ? r->tag[0] : 0;
  const std::int64_t now = host_.core().now_ns;
  const std::int64_t start =
      r != nullptr && r->tag[1] != 0 ? static_cast<std::int64_t>(r->tag[1]) : now;
  if (!sink_.has_room()) return;
  rec::Payload& p = sink_.payload(host_.session_id());
  p.add(rec::Field::Statement, seq);
  switch (type) {
    case pr::be::kErrorResponse: {
      const auto e = pr::read_error(whole);
      p.add(rec::Field::Sqlstate, e ? e->sqlstate : std::string("?"))
          .add_clipped(rec::Field::Message, e ? e->message : std::string("(unreadable)"));
      if (r != nullptr && r->kind == pr::RequestKind::Sync) {
        p.add(rec::Field::Reason, "at Sync: the implicit transaction did not commit");
      }
      break;
    }
    case pr::be::kCommandComplete: {
      std::string_view tag = chars(whole, 5);
      tag = tag.substr(0, tag.find('\0'));
      p.add(rec::Field::Tag, tag).add(rec::Field::Rows, tag_rows(tag));
      break;
    }
    case pr::be::kFunctionCallResponse:
      p.add(rec::Field::Tag, "(function result)");
      break;
    default:
      p.add(rec::Field::Tag,
            type == pr::be::kPortalSuspended ? "(portal suspended)" : "(empty query)");
  }
  p.add(rec::Field::DurationUs, static_cast<std::uint64_t>((now - start) / 1000));
  if (copy_in_ != 0) {
    p.add(rec::Field::Direction, "in").add(rec::Field::Bytes, copy_in_);
  } else if (copy_out_ != 0) {
    p.add(rec::Field::Direction, "out").add(rec::Field::Bytes, copy_out_);
  }
  copy_in_ = copy_out_ = 0;
  sink_.append(rec::RecordType::Outcome);
}

void RecordingStage::record_start(const std::string& client, const std::string& tls,
                                  const std::string& replication_rule) {
  started_ = true;
  const Caller& c = host_.caller();
  rec::Payload& p = sink_.payload(host_.session_id());
  p.add(rec::Field::Identity, c.identity);
  for (const std::string& g : c.groups) p.add(rec::Field::Groups, g);
  for (const std::string& a : c.actors) p.add(rec::Field::Actor, a);
  if (!c.client_id.empty()) p.add(rec::Field::ClientId, c.client_id);
  p.add(rec::Field::Method, c.method)
      .add(rec::Field::Client, client)
      .add(rec::Field::Application, c.application)
      .add(rec::Field::Database, c.upstream_database.empty() ? c.database : c.upstream_database)
      .add(rec::Field::Role, c.role)
      .add(rec::Field::Tls, tls)
      .add(rec::Field::Masking,
           replication_rule.empty()
               ? masking_.label()
               : "none: replication connection allowed by rule \"" + replication_rule + "\"");
  sink_.append(rec::RecordType::SessionStart);
}

bool RecordingStage::record_replication(pr::Bytes query) {
  if (!sink_.has_room()) return false;
  std::string_view text(reinterpret_cast<const char*>(query.data()), query.size());
  text.remove_prefix(std::min<std::size_t>(5, text.size()));
  if (!text.empty() && text.back() == '\0') text.remove_suffix(1);
  rec::Payload& out = sink_.payload(host_.session_id());
  out.add(rec::Field::Statement, ++seq_)
      .add_clipped(rec::Field::Text, masking_.for_record(text))
      .add(rec::Field::Decision, "allow")
      .add(rec::Field::Reason, "replication connection");
  const std::uint64_t end = sink_.append(rec::RecordType::Query);
  if (sink_.durability() == Durability::Strict) wait_durable(end);
  return true;
}

void RecordingStage::record_token(const std::string& what) {
  if (!sink_.has_room()) return;
  const Caller& c = host_.caller();
  rec::Payload& p = sink_.payload(host_.session_id());
  p.add(rec::Field::Identity, c.identity);
  for (const std::string& a : c.actors) p.add(rec::Field::Actor, a);
  p.add(rec::Field::Reason, what);
  sink_.append(rec::RecordType::Token);
}

void RecordingStage::record_end(const std::string& reason) {
  if (ended_) return;
  ended_ = true;
  sink_.forget(*this);
  if (!sink_.has_room()) return;
  rec::Payload& p = sink_.payload(host_.session_id());
  p.add(rec::Field::Reason, reason.empty() ? std::string("connection closed") : reason);
  sink_.append(rec::RecordType::SessionEnd);
}

}  // namespace pgwarden::core
