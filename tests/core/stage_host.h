// A scripted session for stage tests, in the way Envoy tests a network filter with mocked
// callbacks: a real pipeline model and per-core services, byte-built messages, and a record of
// everything a stage asked of its session. No sockets, no ring.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "core/approvals.h"
#include "core/flags.h"
#include "core/record_sink.h"
#include "core/stages/stage.h"
#include "core/worker.h"
#include "policy/rules.h"
#include "protocol/messages.h"
#include "recorder/format.h"

namespace pgwarden::core::testing {

using ByteString = std::basic_string<std::byte>;

inline std::string z(std::string_view s) {
  return std::string(s) + std::string(1, '\0');
}
inline std::string s16(std::uint16_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}
inline std::string s32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xff),
          static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
}
inline ByteString msg(char type, std::string_view body) {
  ByteString out;
  out.push_back(static_cast<std::byte>(type));
  const std::string len = s32(static_cast<std::uint32_t>(body.size() + 4));
  out.append(reinterpret_cast<const std::byte*>(len.data()), 4);
  out.append(reinterpret_cast<const std::byte*>(body.data()), body.size());
  return out;
}
inline ByteString Query(std::string_view sql) {
  return msg('Q', z(sql));
}
inline ByteString Parse(std::string_view name, std::string_view sql) {
  return msg('P', z(name) + z(sql) + s16(0));
}
inline ByteString Bind(std::string_view portal, std::string_view stmt) {
  return msg('B', z(portal) + z(stmt) + s16(0) + s16(0) + s16(0));
}
inline ByteString Execute(std::string_view portal) {
  return msg('E', z(portal) + s32(0));
}
inline ByteString DescribePortal(std::string_view portal) {
  return msg('D', std::string("P") + z(portal));
}
inline ByteString Sync() {
  return msg('S', "");
}
inline ByteString Error(std::string_view sqlstate, std::string_view text) {
  return msg('E', std::string("SERROR") + std::string(1, '\0') + "VERROR" + std::string(1, '\0') +
                      "C" + z(sqlstate) + "M" + z(text) + std::string(1, '\0'));
}
inline ByteString Ready(char status = 'I') {
  return msg('Z', std::string(1, status));
}
// A RowDescription of text columns (table OID and column number per column).
inline ByteString RowDescription(
    const std::vector<std::tuple<std::string, std::uint32_t, std::uint16_t>>& cols) {
  std::string b = s16(static_cast<std::uint16_t>(cols.size()));
  for (const auto& [name, table, attnum] : cols) {
    b += z(name) + s32(table) + s16(attnum) + s32(25) + s16(0xffff) + s32(0xffffffff) + s16(0);
  }
  return msg('T', b);
}
inline ByteString DataRow(const std::vector<std::string>& values) {
  std::string b = s16(static_cast<std::uint16_t>(values.size()));
  for (const std::string& v : values) b += s32(static_cast<std::uint32_t>(v.size())) + v;
  return msg('D', b);
}

// Records kept in memory.
class MemorySink final : public RecordSink {
 public:
  struct Rec {
    recorder::RecordType type;
    std::string payload;
  };
  recorder::Payload& payload(std::uint64_t session) override {
    p_.reset(0, session);
    return p_;
  }
  std::uint64_t append(recorder::RecordType type) override {
    records.push_back({type, std::string(p_.bytes())});
    return ++appended;
  }
  std::uint64_t extend_last(recorder::RecordType type, std::uint64_t end, recorder::Field f,
                            std::uint64_t value) override {
    // (A record reported durable was written out: it cannot change.)
    if (end != appended || end <= synced_ || records.empty() || records.back().type != type) {
      return 0;
    }
    recorder::Payload field;
    field.reset(0, 0);
    field.add(f, value);
    records.back().payload += field.bytes().substr(24);
    return ++appended;
  }
  bool accepting() const noexcept override { return accepting_; }
  bool has_room() const noexcept override { return room_; }
  const std::string& failure() const noexcept override { return failure_; }
  Durability durability() const noexcept override { return durability_; }
  std::uint64_t synced() const noexcept override { return synced_; }
  void wait_durable(DurabilityWaiter& w, std::uint64_t) override { waiter_ = &w; }
  void forget(DurabilityWaiter&) override { waiter_ = nullptr; }
  void sync_all() {
    synced_ = appended;
    if (waiter_ != nullptr) waiter_->on_record_durable();
  }
  // The value of field `f` in record `i` (parsed back), for assertions.
  std::string field(std::size_t i, recorder::Field f) const {
    std::string_view p = records.at(i).payload;
    p.remove_prefix(24);
    while (p.size() >= 5) {
      const auto tag = static_cast<recorder::Field>(static_cast<unsigned char>(p[0]));
      std::uint32_t len = 0;
      for (int k = 4; k >= 1; --k) len = (len << 8) | static_cast<unsigned char>(p[k]);
      if (tag == f) return std::string(p.substr(5, len));
      p.remove_prefix(5 + len);
    }
    return "<none>";
  }
  std::vector<Rec> records;
  std::uint64_t appended = 0;
  bool accepting_ = true;
  bool room_ = true;
  Durability durability_ = Durability::Batch;
  std::string failure_ = "disk full";

 private:
  recorder::Payload p_;
  std::uint64_t synced_ = 0;
  DurabilityWaiter* waiter_ = nullptr;
};

// A session without sockets: stages under test run against it.
class FakeHost final : public StageHost {
 public:
  explicit FakeHost(std::string_view policy_json = "{}") : StageHost(services_), masker_("k") {
    auto p = policy::Policy::parse(policy_json, "test-policy.json");
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
    if (p.ok()) policy_ = *p;
    services_.config = &config_;
    services_.stats = &stats_;
    services_.policy = policy_.get();
    services_.engine = &engine_;
    services_.masker = &masker_;
    services_.catalog = &catalog_;
    services_.now_ns = 1'000'000'000;
    caller_.identity = "alice";
    caller_.principal = "oidc:https://idp.test#u-alice";
    caller_.role = "alice";
  }
  void reload(std::string_view policy_json) {
    auto p = policy::Policy::parse(policy_json, "test-policy.json");
    ASSERT_TRUE(p.ok());
    use(*p);
  }
  // A reload to a policy parsed once (several hosts may share it, as workers do).
  void use(std::shared_ptr<const policy::Policy> p) {
    policy_ = std::move(p);
    services_.policy = policy_.get();
  }

  protocol::PipelineModel& model() noexcept override { return model_; }
  const Caller& caller() const noexcept override { return caller_; }
  std::uint64_t session_id() const noexcept override { return 42; }
  protocol::Request* send_own(protocol::Bytes message, std::uint8_t owner) override {
    own.emplace_back(message.data(), message.size());
    protocol::FrontendView v;
    std::string why;
    const ByteString& kept = own.back();
    EXPECT_TRUE(protocol::read_frontend(kept, v, why)) << why;
    protocol::Request* r = model_.commit(v, protocol::Origin::Gateway, owner);
    log_sent(v, r);
    return r;
  }
  void send_client(protocol::Bytes bytes) override { to_client.append(bytes.data(), bytes.size()); }
  void hold_upstream() override { holding = true; }
  void release_upstream() override { holding = false; }
  void decide_held(bool approved, std::string_view, std::string message,
                   std::string outcome) override {
    decisions.push_back({approved, std::move(message), std::move(outcome)});
  }
  void fail(std::string_view sqlstate, std::string_view message) override {
    failed = std::string(sqlstate) + " " + std::string(message);
  }
  void fail_after_replies(std::string_view sqlstate, const std::string& message) override {
    fail(sqlstate, message);
  }

  // The session's chains of `stages` (in order), by their interests; or, with `every_hook`,
  // chains that call every hook of every stage for every message (what the interests narrow).
  struct Chains {
    Chains(const std::vector<Stage*>& stages, bool every_hook) {
      for (Stage* s : stages) {
        const Interest in = every_hook ? Interest{} : s->interest();
        front.add(s, in.frontend);
        front_gated.add(s, in.gates ? TypeSet::all() : in.frontend);
        done.add(s, in.frontend_done);
        back.add(s, in.backend);
        retired.add(s, in.retired);
      }
    }
    StageChain front, front_gated, done, back, retired;
  };
  // Runs one client message through `stages` (in order) and commits it as the session would.
  struct Result {
    Verdict verdict;
    std::string message;
    protocol::Request* request;
    bool granted = false;
    std::string reason;
  };
  Result frontend(const std::vector<Stage*>& stages, const ByteString& m) {
    client_msgs.push_back(m);
    protocol::FrontendView v;
    std::string why;
    EXPECT_TRUE(protocol::read_frontend(client_msgs.back(), v, why)) << why;
    FrontendMessage fm(v);
    // Each hook reaches the stages whose interest has the message, as in the session.
    const Chains c(stages, every_hook);
    bool gated = false;
    for (const Stage* s : stages) gated = gated || s->gates_input();
    (gated ? c.front_gated : c.front).each(v.type, false, [&fm](Stage* s) { s->on_frontend(fm); });
    protocol::Request* r = nullptr;
    if (fm.verdict == Verdict::Defer) {
      return {fm.verdict, fm.message, nullptr, fm.granted, fm.reason};  // input waits: no fate yet
    }
    if (fm.verdict == Verdict::Forward || fm.verdict == Verdict::Replace) {
      r = model_.commit(v);
      log_sent(v, r);
    } else if (fm.verdict == Verdict::Refuse) {
      if (v.type == 'Q' || v.type == 'F') {
        r = &model_.commit_local(protocol::RequestKind::Query);
      } else {
        ByteString standin;
        protocol::append_execute(standin, "standin", 0);
        own.push_back(standin);
        protocol::FrontendView sv;
        EXPECT_TRUE(protocol::read_frontend(own.back(), sv, why));
        r = model_.commit(sv, protocol::Origin::StandIn);
        log_sent(sv, r);
      }
      r->tag_text = std::string(fm.sqlstate) + fm.message;
    }
    c.done.each(v.type, false, [&fm, r](Stage* s) { s->on_frontend_done(fm, r); });
    return {fm.verdict, fm.message, r, fm.granted, fm.reason};
  }
  // Feeds one server message to the model and `stages`; returns what the client would get.
  BackendMessage backend(const std::vector<Stage*>& stages, const ByteString& m) {
    server_msgs.push_back(m);
    const ByteString& kept = server_msgs.back();
    events.push_back(model_.on_backend(static_cast<char>(kept[0]), kept));
    EXPECT_EQ(events.back().divergence, nullptr) << events.back().divergence;
    BackendMessage bm;
    bm.type = static_cast<char>(kept[0]);
    bm.whole = kept;
    bm.size = static_cast<std::uint32_t>(kept.size());
    bm.event = &events.back();
    const Chains c(stages, every_hook);
    const protocol::Request* req = bm.event->request;
    c.back.each(bm.type, req != nullptr && req->origin == protocol::Origin::Gateway,
                [&bm](Stage* s) { s->on_backend(bm); });
    retire(c);
    return bm;
  }
  // The server's answer to a batch of pgwarden's own statements (send_own_statements): two
  // CloseCompletes, then for each statement ParseComplete, BindComplete, its rows, CommandComplete
  // and two CloseCompletes; then ReadyForQuery with `status`. Returns what each reply became.
  std::vector<BackendMessage> answer_own(const std::vector<Stage*>& stages,
                                         const std::vector<std::vector<ByteString>>& rows,
                                         char status = 'I') {
    std::vector<BackendMessage> out;
    for (int i = 0; i < 2; ++i) out.push_back(backend(stages, msg('3', "")));
    for (const std::vector<ByteString>& statement : rows) {
      out.push_back(backend(stages, msg('1', "")));
      out.push_back(backend(stages, msg('2', "")));
      for (const ByteString& row : statement) out.push_back(backend(stages, row));
      out.push_back(backend(stages, msg('C', z("SELECT " + std::to_string(statement.size())))));
      for (int i = 0; i < 2; ++i) out.push_back(backend(stages, msg('3', "")));
    }
    out.push_back(backend(stages, Ready(status)));
    return out;
  }
  // The server's answer to the policy's search_path check in flight: the three SHOWs' `rows`,
  // and, when the check asked (it does outside a transaction block), the roles the session user
  // may become: `members`.
  std::vector<BackendMessage> answer_check(const std::vector<Stage*>& stages,
                                           std::vector<std::vector<ByteString>> rows,
                                           char status = 'I',
                                           const std::vector<std::string>& members = {}) {
    const std::vector<std::string> sent = own_statements();
    if (!sent.empty() && sent.back().find("pg_has_role") != std::string::npos) {
      rows.emplace_back();
      for (const std::string& name : members) rows.back().push_back(DataRow({name}));
    }
    return answer_own(stages, rows, status);
  }
  // How many search_path checks the policy sent so far.
  std::size_t path_checks() const {
    std::size_t n = 0;
    for (const std::string& sql : own_statements()) n += sql == "SHOW search_path";
    return n;
  }
  // The SQL of each of pgwarden's own statements sent so far (send_own_statements), in order.
  std::vector<std::string> own_statements() const {
    std::vector<std::string> out;
    for (const ByteString& m : own) {
      protocol::FrontendView v;
      std::string why;
      if (protocol::read_frontend(m, v, why) && v.type == protocol::fe::kParse &&
          v.name.substr(0, kOwnStatementPrefix.size()) == kOwnStatementPrefix) {
        out.emplace_back(v.text);
      }
    }
    return out;
  }
  // Pops what is answered (and answers refusals whose turn came), as the session does after
  // each message.
  void retire(const std::vector<Stage*>& stages) { retire(Chains(stages, every_hook)); }

  // Every hook of every stage for every message, whatever their interests (Chains).
  bool every_hook = false;
  // What went upstream, in order: the messages a server would answer.
  struct Sent {
    char type;
    protocol::Origin origin;
    std::string name, statement, text;
    char target;
  };
  std::vector<Sent> sent;

  Caller caller_;
  Config config_;
  WorkerStats stats_;
  std::deque<ByteString> own;  // pgwarden's own messages sent upstream
  ByteString to_client;
  bool holding = false;
  std::string failed;
  struct Decision {
    bool approved;
    std::string message, outcome;
  };
  std::vector<Decision> decisions;

 private:
  void retire(const Chains& c) {
    model_.retire(
        [&](const protocol::Request& r) {
          c.retired.each(r.kind, false, [&r](Stage* s) { s->on_retired(r); });
        },
        [&](protocol::Request&) {});
  }
  void log_sent(const protocol::FrontendView& v, const protocol::Request* r) {
    if (r == nullptr) return;
    sent.push_back({v.type, r->origin, std::string(v.name), std::string(v.statement),
                    std::string(v.text), v.target});
  }
  protocol::PipelineModel model_;
  std::shared_ptr<const policy::Policy> policy_;
  CoreServices services_;
  policy::PolicyEngine engine_;
  policy::Masker masker_;
  CatalogCache catalog_;
  std::deque<ByteString> client_msgs;
  std::deque<ByteString> server_msgs;
  std::deque<protocol::PipelineModel::Event> events;
};

}  // namespace pgwarden::core::testing
