#include "core/approvals.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>

#include "core/notifier.h"
#include "core/worker.h"
#include "protocol/json.h"

namespace pgwarden::core {

namespace {

bool same_identity(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

void append_strings(std::string& out, const std::vector<std::string>& v) {
  out += "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += ",";
    protocol::append_json_string(out, v[i]);
  }
  out += "]";
}

// The members of a pending statement, as a JSON object left open.
// The first `max` bytes of `s`, cut at a character boundary.
std::string_view clipped(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  while (max > 0 && (static_cast<unsigned char>(s[max]) & 0xC0) == 0x80) --max;
  return s.substr(0, max);
}

// `statement_max`: notifications carry at most this much of the statement (a held statement may
// be megabytes; a queue of notifications for a slow receiver must stay small).
void append_pending(std::string& out, std::uint64_t id, const Approvals::Pending& p,
                    std::size_t statement_max = std::string::npos) {
  char session[20];
  std::snprintf(session, sizeof session, "%016llx", static_cast<unsigned long long>(p.session));
  out += "{\"id\":\"" + approval_id_text(id) + "\",\"session\":\"" + session + "\",\"identity\":";
  protocol::append_json_string(out, p.identity);
  out += ",\"actors\":";
  protocol::append_json_strings(out, p.actors);
  out += ",\"statement\":";
  protocol::append_json_string(out, clipped(p.statement, statement_max));
  if (p.statement.size() > statement_max) {
    out += ",\"statement_bytes\":" + std::to_string(p.statement.size());
  }
  if (!p.tool.empty()) {
    out += ",\"tool\":";
    protocol::append_json_string(out, clipped(p.tool, 200));
  }
  if (!p.intent.empty()) {
    out += ",\"intent\":";
    protocol::append_json_string(out, clipped(p.intent, 1000));
  }
  out += ",\"rule\":";
  protocol::append_json_string(out, p.rule);
  out += ",\"reason\":";
  protocol::append_json_string(out, p.reason);
  out += ",\"approvers\":";
  append_strings(out, p.approvers);
  out += ",\"approvals_required\":" + std::to_string(p.required) + ",\"approved_by\":";
  append_strings(out, p.approved_by);
  out += ",\"requested_at_us\":" + std::to_string(p.requested_at_us);
}

// Chat services (Slack, Teams) read `text` as markup: <...> makes links and mentions there.
std::string chat_escaped(std::string_view whole, std::size_t max) {
  std::string out;
  const std::string_view s = clipped(whole, max);
  for (const char c : s) {
    if (c == '[') {
      out += '(';  // no Markdown link: [text](url)
    } else if (c == ']') {
      out += ')';
    } else if (c == '&') {
      out += "&amp;";
    } else if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == '`') {
      out += '\'';
    } else {
      out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
    }
  }
  if (whole.size() > s.size()) out += "...";
  return out;
}

// One notification: the pending statement, what happened, and a `text` line for chat.
std::string event_json(std::uint64_t id, const Approvals::Pending& p, const std::string& event,
                       const std::string& extra, const std::string& text) {
  std::string out;
  append_pending(out, id, p, 2000);
  out += ",\"event\":\"" + event + "\"" + extra + ",\"text\":";
  protocol::append_json_string(out, text);
  out += "}";
  return out;
}

std::string held_line(const Approvals::Pending& p) {
  return chat_escaped(p.identity, 200) +
         (p.actors.empty() ? "" : " (agent " + chat_escaped(p.actors.front(), 200) + " acting)") +
         " wants to run `" + chat_escaped(p.statement, 500) + "` (rule " +
         chat_escaped(p.rule, 100) + ", " + chat_escaped(p.reason, 200) + ")" +
         (p.intent.empty() ? ""
                           : "; intent, as the agent states it: " + chat_escaped(p.intent, 300));
}

}  // namespace

bool AdminCaller::in_any(const std::vector<std::string>& wanted) const {
  for (const auto& g : groups) {
    if (std::find(wanted.begin(), wanted.end(), g) != wanted.end()) return true;
  }
  return false;
}

std::string approval_id_text(std::uint64_t id) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
  return text;
}

bool parse_approval_id(const std::string& text, std::uint64_t& id) {
  if (text.size() != 16 || text.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return false;
  }
  id = std::stoull(text, nullptr, 16);
  return true;
}

std::uint64_t Approvals::request(Pending p) {
  std::uint64_t id = 0;
  std::string note;
  {
    std::lock_guard lock(mu_);
    while (id == 0 || pending_.count(id) != 0) {
      if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) std::abort();
    }
    if (notifier_ != nullptr) {
      const std::string hex = approval_id_text(id);
      note = event_json(id, p, "approval.requested", "",
                        "pgwarden: " + held_line(p) + ". Decide with: pgwarden approvals approve " +
                            hex + "  (or deny " + hex + ")");
    }
    pending_.emplace(id, std::move(p));
  }
  if (!note.empty()) notifier_->notify("approval.requested", std::move(note));
  return id;
}

bool Approvals::withdraw(std::uint64_t id, const std::string& why) {
  std::string note;
  {
    std::lock_guard lock(mu_);
    const auto it = pending_.find(id);
    if (it == pending_.end()) return false;
    if (notifier_ != nullptr) {
      std::string extra = ",\"decision\":";
      protocol::append_json_string(extra, why);
      note = event_json(
          id, it->second, "approval.withdrawn", extra,
          "pgwarden: no decision: " + held_line(it->second) + " " + chat_escaped(why, 200));
    }
    pending_.erase(it);
  }
  if (!note.empty()) notifier_->notify("approval.withdrawn", std::move(note));
  return true;
}

Approvals::Outcome Approvals::decide(std::uint64_t id, bool approved, const AdminCaller& by,
                                     const std::string& reason) {
  ApprovalDecision d{id, 0, approved, by.identity, reason};
  unsigned core = 0;
  std::string note, event;
  {
    std::lock_guard lock(mu_);
    const auto it = pending_.find(id);
    if (it == pending_.end()) return Outcome::NotFound;
    Pending& p = it->second;
    if (!by.in_any(p.approvers)) return Outcome::NotApprover;
    // Four eyes: the same person by name or by account (a token without the e-mail claim, or
    // with another spelling of it, still names the same issuer and subject).
    if (same_identity(by.identity, p.identity) ||
        (!by.principal.empty() && by.principal == p.principal)) {
      return Outcome::OwnStatement;
    }
    if (approved) {
      for (std::size_t i = 0; i < p.approved_by.size(); ++i) {
        if (same_identity(p.approved_by[i], by.identity) ||
            (!by.principal.empty() && p.approved_principals[i] == by.principal)) {
          return Outcome::AlreadyCounted;
        }
      }
      p.approved_by.push_back(by.identity);
      p.approved_principals.push_back(by.principal);
      if (p.approved_by.size() < p.required) {
        if (notifier_ != nullptr) {
          notifier_->notify(
              "approval.counted",
              event_json(id, p, "approval.counted", "",
                         "pgwarden: " + chat_escaped(by.identity, 200) + " approved (" +
                             std::to_string(p.approved_by.size()) + " of " +
                             std::to_string(p.required) + "): " + held_line(p)));
        }
        return Outcome::Counted;
      }
      d.approver = joined(p.approved_by);
    }
    d.session = p.session;
    core = p.core;
    if (notifier_ != nullptr) {
      event = "approval.decided";
      std::string extra =
          std::string(",\"decision\":\"") + (approved ? "approved" : "denied") + "\",\"by\":";
      protocol::append_json_string(extra, d.approver);
      extra += ",\"decision_reason\":";
      protocol::append_json_string(extra, reason);
      note = event_json(id, p, event, extra,
                        "pgwarden: " + std::string(approved ? "approved" : "denied") + " by " +
                            chat_escaped(d.approver, 300) +
                            (reason.empty() ? "" : " (" + chat_escaped(reason, 500) + ")") + ": " +
                            held_line(p));
    }
    pending_.erase(it);
  }
  if (!note.empty()) notifier_->notify(event, std::move(note));
  if (workers_ != nullptr && core < workers_->size()) {
    (*workers_)[core]->mailbox().post_approval(std::move(d));
  }
  return Outcome::Decided;
}

std::string Approvals::list_json(const AdminCaller& by,
                                 const std::vector<std::string>& admins) const {
  const bool admin = by.in_any(admins);
  std::lock_guard lock(mu_);
  std::string out = "[";
  for (const auto& [id, p] : pending_) {
    if (!admin && !by.in_any(p.approvers)) continue;
    if (out.size() > 1) out += ",";
    append_pending(out, id, p);
    out += "}";
  }
  out += "]\n";
  return out;
}

Approvals::Waiting Approvals::waiting() const {
  std::lock_guard lock(mu_);
  Waiting w;
  w.count = pending_.size();
  for (const auto& [id, p] : pending_) {
    if (w.oldest_us == 0 || p.requested_at_us < w.oldest_us) w.oldest_us = p.requested_at_us;
  }
  return w;
}

}  // namespace pgwarden::core
