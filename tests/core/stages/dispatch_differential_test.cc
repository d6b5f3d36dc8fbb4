// The session calls a stage's hook only for the messages in its interest (and, while policy or
// masking gates input, every frontend message to those stages). That narrowing must change
// nothing a client, the server or the recording can see: every hook outside a stage's interest
// must be one that would have done nothing. Here two sessions run the same random conversations
// (seeded, reproducible): one dispatches as the session does, the other calls every hook of every
// stage for every message. Each step must give both the same verdicts, the same bytes to the
// server and to the client, and the same records. A stage that starts acting on a message type
// its interest leaves out, or starts deferring without gating, makes the two differ.
#include <cstdio>
#include <random>

#include "core/stages/approval_stage.h"
#include "core/stages/masking_stage.h"
#include "core/stages/policy_stage.h"
#include "core/stages/recording_stage.h"
#include "tests/core/stage_host.h"

namespace pgwarden::core {
namespace {

using namespace testing;  // NOLINT

// A PostgreSQL stand-in that answers what went upstream, in order, as the server would: errors
// skip extended-protocol messages up to the next Sync, transaction status follows BEGIN, COMMIT
// and errors, and names are kept as the server keeps them.
class FakeServer {
 public:
  // The replies to one message that went upstream (none while skipping to a Sync).
  std::vector<ByteString> answer(const FakeHost::Sent& m) {
    out_.clear();
    if (skipping_ && m.type != 'S') return out_;
    switch (m.type) {
      case 'Q':
        query(m.text);
        break;
      case 'P':
        if (m.text.find(';') != std::string::npos) {
          fail("42601", "cannot insert multiple commands into a prepared statement");
        } else if (aborted(m.text)) {
          fail("25P02", "current transaction is aborted");
        } else {
          statements_[m.name] = m.text;
          put('1', "");
        }
        break;
      case 'B':
        if (!statements_.contains(m.statement)) {
          fail("26000", "prepared statement does not exist");
        } else if (aborted(statements_[m.statement])) {
          fail("25P02", "current transaction is aborted");
        } else {
          portals_[m.name] = statements_[m.statement];
          put('2', "");
        }
        break;
      case 'D': {
        auto& names = m.target == 'S' ? statements_ : portals_;
        const auto it = names.find(m.name);
        if (it == names.end()) {
          fail(m.target == 'S' ? "26000" : "34000", "does not exist");
          break;
        }
        if (m.target == 'S') put('t', s16(0));
        if (reads_people(it->second) || starts(it->second, "SELECT")) {
          out_.push_back(description(it->second));
        } else {
          put('n', "");
        }
        break;
      }
      case 'E': {
        const auto it = portals_.find(m.name);
        if (it == portals_.end()) {
          fail("34000", "portal does not exist");
        } else if (aborted(it->second)) {
          fail("25P02", "current transaction is aborted");
        } else if (!run(it->second, false)) {
          skipping_ = true;
        }
        break;
      }
      case 'C':
        (m.target == 'S' ? statements_ : portals_).erase(m.name);
        put('3', "");
        break;
      case 'S':
        skipping_ = false;
        if (tx_ == 'I') portals_.clear();
        out_.push_back(Ready(tx_));
        break;
      default:
        ADD_FAILURE() << "the fake server cannot answer " << m.type;
    }
    return out_;
  }

 private:
  static bool starts(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(0, p.size()) == p;
  }
  static bool reads_people(std::string_view sql) {
    return sql.find("FROM people") != std::string_view::npos;
  }
  bool aborted(std::string_view sql) const {
    return tx_ == 'E' && !starts(sql, "COMMIT") && !starts(sql, "ROLLBACK");
  }
  void put(char type, std::string_view body) { out_.push_back(msg(type, body)); }
  void fail(std::string_view sqlstate, std::string_view text) {
    out_.push_back(Error(sqlstate, text));
    if (tx_ == 'T') tx_ = 'E';
    skipping_ = true;
  }
  static ByteString description(std::string_view sql) {
    if (starts(sql, "SELECT a.attrelid")) {  // masking's catalog query
      return RowDescription({{"attrelid", 0, 0}, {"attnum", 0, 0}, {"rule", 0, 0}});
    }
    if (starts(sql, "SHOW ")) return RowDescription({{std::string(sql.substr(5)), 0, 0}});
    if (reads_people(sql)) return RowDescription({{"ssn", 16384, 1}, {"email", 16384, 2}});
    return RowDescription({{"note", 0, 0}});
  }
  // One statement; `simple`: its RowDescription is sent (a Query's, not an Execute's). False
  // when it failed.
  bool run(std::string_view sql, bool simple) {
    if (sql.find("1/0") != std::string_view::npos) {
      out_.push_back(Error("22012", "division by zero"));
      if (tx_ == 'T') tx_ = 'E';
      return false;
    }
    if (starts(sql, "BEGIN")) {
      tx_ = 'T';
      put('C', z("BEGIN"));
    } else if (starts(sql, "COMMIT") || starts(sql, "ROLLBACK")) {
      put('C', z(tx_ == 'E' || starts(sql, "ROLLBACK") ? "ROLLBACK" : "COMMIT"));
      tx_ = 'I';
      portals_.clear();
    } else if (starts(sql, "COPY")) {
      put('H', std::string(1, '\0') + s16(2) + s16(0) + s16(0));
      put('d', "219-09-9999\tbob@example.com\n");
      put('c', "");
      put('C', z("COPY 1"));
    } else if (starts(sql, "SELECT a.attrelid")) {
      if (simple) out_.push_back(description(sql));
      out_.push_back(DataRow({"16384", "1", "0"}));
      put('C', z("SELECT 1"));
    } else if (starts(sql, "SHOW ")) {  // the policy's check: search_path, role, session user
      if (simple) out_.push_back(description(sql));
      const std::string_view name = sql.substr(5);
      out_.push_back(DataRow({name == "search_path" ? "public" : name == "role" ? "none" : "app"}));
      put('C', z("SHOW"));
    } else if (reads_people(sql)) {
      if (simple) out_.push_back(description(sql));
      out_.push_back(DataRow({"219-09-9999", "bob@example.com"}));
      out_.push_back(DataRow({"078-05-1120", "note to carol@example.org"}));
      put('C', z("SELECT 2"));
    } else if (starts(sql, "SELECT")) {
      if (simple) out_.push_back(description(sql));
      out_.push_back(DataRow({"call 219-09-9999"}));
      put('C', z("SELECT 1"));
    } else {
      put('C', z(sql.substr(0, sql.find(' '))));
    }
    return true;
  }
  void query(std::string_view text) {
    statements_.erase("");
    portals_.erase("");
    bool any = false;
    while (!text.empty()) {
      const std::size_t end = text.find(';');
      std::string_view one = text.substr(0, end);
      text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
      while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
      if (one.empty()) continue;
      any = true;
      if (aborted(one)) {
        out_.push_back(Error("25P02", "current transaction is aborted"));
        break;
      }
      if (!run(one, true)) break;
    }
    if (!any) put('I', "");
    out_.push_back(Ready(tx_));
  }

  std::map<std::string, std::string> statements_, portals_;
  std::vector<ByteString> out_;
  char tx_ = 'I';
  bool skipping_ = false;
};

// One session: its stages in the session's order, on a host that dispatches one way.
struct World {
  World(std::shared_ptr<const policy::Policy> pol, bool every_hook)
      : masking(host), policy(host), approvals(host), recording(host, sink, masking) {
    host.every_hook = every_hook;
    host.use(std::move(pol));
    policy.set_masking(&masking);
    approvals.set_policy(&policy);
    approvals.set_masking(&masking);
    (void)masking.profile();  // as the session does when it builds its chains
  }
  std::vector<Stage*> chain() { return {&policy, &masking, &approvals, &recording}; }
  FakeHost host;
  MemorySink sink;
  MaskingStage masking;
  PolicyStage policy;
  ApprovalStage approvals;
  RecordingStage recording;
};

const char* const kSql[] = {
    "SELECT ssn, email FROM people",
    "SELECT 1",
    "SELECT note FROM t WHERE note = 'bob@example.com'",
    "DROP TABLE t",
    "SELECT 1; DROP TABLE t",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SELECT 1/0",
    "ALTER TABLE people ADD COLUMN x int",
    "UPDATE people SET email = 'a@b.c'",
    "SELECT * FROM secret.t",
    "SET search_path TO public",
    "SELECT ssn FROM people; SELECT 1/0",
    "SELECT 'caf\xc3\xa9' AS note",  // non-ASCII: waits while the encoding may change
};
const char* const kCopy = "COPY people TO STDOUT";

ByteString random_message(std::mt19937& rng) {
  const auto pick = [&rng](const auto& list) { return list[rng() % std::size(list)]; };
  const char* const statements[] = {"", "s1", "s2"};
  const char* const portals[] = {"", "p1"};
  switch (rng() % 12) {
    case 0:
    case 1:
      return Query(rng() % 8 == 0 ? kCopy : pick(kSql));
    case 2:
    case 3:
      return Parse(pick(statements), pick(kSql));
    case 4:
    case 5:
      return Bind(pick(portals), pick(statements));
    case 6:
      return DescribePortal(pick(portals));
    case 7:
      return msg('D', std::string("S") + z(pick(statements)));
    case 8:
    case 9:
      return Execute(pick(portals));
    case 10:
      if (rng() % 2 != 0) return msg('C', "S" + z(pick(statements)));
      return msg('C', "P" + z(pick(portals)));
    default:
      return Sync();
  }
}

// Both sessions have told the client, the server and the recording the same so far (what was
// compared before is not compared again).
struct Compared {
  std::size_t sent = 0, own = 0, records = 0, to_client = 0;
};
void expect_same(World& a, World& b, Compared& done, const std::string& where) {
  // Each session names its own statement with random bits of its own: a's name stands for b's.
  const std::string& a_name = a.host.own_name();
  const std::string& b_name = b.host.own_name();
  const auto as_b = [&](std::string_view s) {
    std::string out(s);
    for (std::size_t at = out.find(a_name); at != std::string::npos; at = out.find(a_name, at)) {
      out.replace(at, a_name.size(), b_name);
    }
    return out;
  };
  ASSERT_EQ(a.host.sent.size(), b.host.sent.size()) << where;
  for (; done.sent < a.host.sent.size(); ++done.sent) {
    const FakeHost::Sent& x = a.host.sent[done.sent];
    const FakeHost::Sent& y = b.host.sent[done.sent];
    ASSERT_TRUE(x.type == y.type && x.text == y.text && as_b(x.name) == y.name &&
                as_b(x.statement) == y.statement && x.origin == y.origin)
        << where << ": upstream message " << done.sent;
  }
  ASSERT_EQ(a.host.own.size(), b.host.own.size()) << where;
  for (; done.own < a.host.own.size(); ++done.own) {
    const ByteString& x = a.host.own[done.own];
    const ByteString& y = b.host.own[done.own];
    ASSERT_EQ(as_b(std::string_view(reinterpret_cast<const char*>(x.data()), x.size())),
              std::string_view(reinterpret_cast<const char*>(y.data()), y.size()))
        << where << ": own " << done.own;
  }
  ASSERT_EQ(a.sink.records.size(), b.sink.records.size()) << where;
  for (; done.records < a.sink.records.size(); ++done.records) {
    const auto& x = a.sink.records[done.records];
    const auto& y = b.sink.records[done.records];
    ASSERT_TRUE(x.type == y.type && x.payload == y.payload) << where << ": record " << done.records;
  }
  ASSERT_EQ(a.host.to_client.size(), b.host.to_client.size()) << where;
  ASSERT_TRUE(a.host.to_client.compare(done.to_client, std::string::npos, b.host.to_client,
                                       done.to_client) == 0)
      << where;
  done.to_client = a.host.to_client.size();
  ASSERT_EQ(a.host.failed, b.host.failed) << where;
  ASSERT_EQ(a.host.holding, b.host.holding) << where;
  ASSERT_EQ(a.masking.gates_input(), b.masking.gates_input()) << where;
  ASSERT_EQ(a.policy.gates_input(), b.policy.gates_input()) << where;
}

// The usual deny list, masking by column and by content, and a forbidden schema (whose
// search_path check gates input while it is open).
constexpr const char* kPolicy = R"({"rules": [{"name": "r", "deny": ["drop"],
      "forbidden_tables": ["secret.*"]}],
    "masking": [{"name": "m", "columns": [{"column": "ssn", "action": "redact"}],
                 "detectors": {"email": "redact", "ssn": "redact"}}]})";
// Without the forbidden schema: no search_path check, only masking can gate.
constexpr const char* kNoSchemaRule = R"({"rules": [{"name": "r", "deny": ["drop"]}],
    "masking": [{"name": "m", "columns": [{"column": "ssn", "action": "redact"}],
                 "detectors": {"email": "redact", "ssn": "redact"}}]})";

// What reloads cycle through, each parsed once.
const std::vector<std::shared_ptr<const policy::Policy>>& policies() {
  static const auto all = [] {
    std::vector<std::shared_ptr<const policy::Policy>> out;
    for (const char* json : {kPolicy, kNoSchemaRule, R"({"rules": [{"name": "r", "deny": ["drop"],
          "forbidden_tables": ["secret.*"]}]})"}) {
      auto p = policy::Policy::parse(json, "test-policy.json");
      EXPECT_TRUE(p.ok());
      out.push_back(p.ok() ? *p : nullptr);
    }
    return out;
  }();
  return all;
}

// Runs one seeded conversation of `steps` client messages; returns how many were deferred (the
// gating path) so the caller can see it was exercised.
int converse(std::size_t first, unsigned seed, int steps, std::string& log) {
  World a(policies()[first], false);
  World b(policies()[first], true);
  FakeServer server;
  std::mt19937 rng(seed);
  std::size_t answered = 0;
  std::deque<ByteString> replies;
  ByteString pending;
  int deferred = 0;
  Compared done;
  std::size_t reloads = first;
  for (int step = 0; step < steps && !::testing::Test::HasFatalFailure(); ++step) {
    if (pending.empty() && rng() % 60 == 0) {
      // A reload: the next policy in turn, in both sessions (each judges again, checks the
      // search_path again, and masks by the new profile).
      reloads = (reloads + 1) % policies().size();
      a.host.use(policies()[reloads]);
      b.host.use(policies()[reloads]);
    }
    if (pending.empty()) pending = random_message(rng);
    const std::string where = "seed " + std::to_string(seed) + " step " + std::to_string(step);
    log += static_cast<char>(pending[0]);
    const auto ra = a.host.frontend(a.chain(), pending);
    const auto rb = b.host.frontend(b.chain(), pending);
    EXPECT_EQ(ra.verdict, rb.verdict) << where;
    EXPECT_EQ(ra.message, rb.message) << where;
    EXPECT_EQ(ra.reason, rb.reason) << where;
    EXPECT_EQ(ra.request != nullptr, rb.request != nullptr) << where;
    if (ra.verdict != rb.verdict) return deferred;
    const bool wait = ra.verdict == Verdict::Defer;
    if (wait) {
      ++deferred;
    } else {
      pending.clear();
    }
    if (ra.verdict == Verdict::Fail) break;
    a.host.retire(a.chain());
    b.host.retire(b.chain());
    expect_same(a, b, done, where);
    for (; answered < a.host.sent.size(); ++answered) {
      for (ByteString& r : server.answer(a.host.sent[answered])) replies.push_back(std::move(r));
    }
    // The server's replies arrive in random slices; all of them while input waits.
    std::size_t n = wait ? replies.size() : rng() % (replies.size() + 1);
    if (wait && n == 0) {
      ADD_FAILURE() << where << ": input waits, but nothing is in flight to settle it: in flight "
                    << a.host.model().in_flight() << " settled " << a.host.model().settled()
                    << " masking gates " << a.masking.gates_input() << " policy gates "
                    << a.policy.gates_input() << " sent " << a.host.sent.size() << " skipping "
                    << a.host.model().skipping();
      break;
    }
    for (; n > 0; --n) {
      const ByteString m = std::move(replies.front());
      replies.pop_front();
      const BackendMessage ma = a.host.backend(a.chain(), m);
      const BackendMessage mb = b.host.backend(b.chain(), m);
      const std::string at = where + " reply " + static_cast<char>(m[0]);
      EXPECT_EQ(ma.verdict, mb.verdict) << at;
      EXPECT_TRUE(ByteString(ma.delivered().begin(), ma.delivered().end()) ==
                  ByteString(mb.delivered().begin(), mb.delivered().end()))
          << at;
      EXPECT_EQ(ma.message, mb.message) << at;
      expect_same(a, b, done, at);
      if (::testing::Test::HasFailure()) return deferred;
      // Replies may let the stages send their own requests (the server reads them at once).
      for (; answered < a.host.sent.size(); ++answered) {
        for (ByteString& r : server.answer(a.host.sent[answered])) replies.push_back(std::move(r));
      }
    }
  }
  return deferred;
}

TEST(DispatchDifferentialTest, NarrowedHooksChangeNothingAnyoneSees) {
  int deferred = 0;
  std::size_t messages = 0;
  for (const std::size_t first : {0u, 1u}) {  // (and reloads to the others)
    for (unsigned seed = 1; seed <= 25; ++seed) {
      std::string log;
      deferred += converse(first, seed, 300, log);
      ASSERT_FALSE(::testing::Test::HasFailure()) << "messages: " << log;
      messages += log.size();
    }
  }
  std::printf("%zu client messages, %d of them waited\n", messages, deferred);
  // The gating path ran (a search_path check or masking's COPY block held input).
  EXPECT_GT(deferred, 0);
}

}  // namespace
}  // namespace pgwarden::core
