// The statement policy stage: judges every Query and Parse text (and a Bind of a named statement,
// again after a reload) under the caller's rule, refuses what the rule denies, marks what it
// holds for the approvals stage, and puts pgwarden's 42501 in place of a refused message's
// stand-in error. It owns the caller's rule and the texts of the session's named statements.
// Lives on the session's core.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "core/stages/stage.h"
#include "policy/rules.h"
#include "protocol/by_name.h"

namespace pgwarden::core {

class MaskingStage;

class PolicyStage final : public Stage {
 public:
  explicit PolicyStage(StageHost& host) : host_(host) {}

  void on_frontend(FrontendMessage& m) override;
  void on_frontend_done(FrontendMessage& m, protocol::Request* r) override;
  void on_held_decided(FrontendMessage& m, protocol::Request* r) override {
    moves_path_user_ = held_moves_path_user_;
    held_moves_path_user_ = false;
    on_frontend_done(m, r);
  }
  void on_retired(const protocol::Request& r) override;
  // What it judges (every frontend message while a search_path check is due, pending or
  // refused: it defers or refuses them all); what defines or drops a statement; Parses that fail.
  Interest interest() const noexcept override {
    namespace fe = protocol::fe;
    return {TypeSet{fe::kQuery, fe::kParse, fe::kBind, fe::kFunctionCall},
            TypeSet{fe::kQuery, fe::kParse, fe::kClose}, TypeSet::all(),
            TypeSet{protocol::RequestKind::Parse}, true};
  }
  // Everything on_frontend does to a message outside the judged types is search_path_pending's
  // and the refusal's: it has nothing to do while the check is settled (as search_path_pending
  // tells it) under the policy in force.
  bool gates_input() const noexcept override {
    const policy::Policy* pol = host_.core().policy;
    return pol != nullptr &&
           (!path_refusal_.empty() || path_ != PathCheck::None || path_policy_ != pol->id() ||
            !moving_portals_.empty() || every_portal_moves_);
  }
  void on_backend(BackendMessage& m) override;
  // The caller's rule forbids a whole schema ("schema.*"): the session's own search_path (the
  // role's or database's default) is read once, and a session whose path names such a schema
  // ends, since unqualified names would reach its tables. Needs the backend chain meanwhile.
  bool checks_search_path();
  // A search_path check is due or in flight: its replies are this stage's whatever the policy
  // is when they come.
  bool check_open() const noexcept { return path_ != PathCheck::None; }

  // The caller's rule under the policy in force (null: none applies).
  const policy::Rule* rule();
  // Masking follows DDL and COPY: statements are classified even where no rule applies while
  // its profile has column rules.
  void set_masking(MaskingStage* m) noexcept { masking_ = m; }

  // Whether `sql` may (re)define prepared statements: SQL DEALLOCATE, PREPARE, DISCARD, or
  // EXECUTE of dynamic SQL that could run them (case-insensitive words in the text).
  static bool may_redefine_statements(std::string_view sql);
  // Whether `text` has a byte outside ASCII (lexing_hazard's test).
  static bool has_non_ascii(std::string_view text) noexcept;
  // The text of prepared statement `name` as it was parsed ("" when not kept or not known).
  std::string_view statement_text(std::string_view name) const {
    const auto it = named_.find(protocol::name_key(name));
    return it != named_.end() ? std::string_view(it->second.text) : std::string_view();
  }
  // Named statements tracked for judging them again after a reload.
  static constexpr std::size_t kMaxStatements = 10000;
  static constexpr std::size_t kMaxTextBytes = 4u << 20;

 private:
  void judge_text(FrontendMessage& m, std::string_view text);
  void judge_bind(FrontendMessage& m);
  void judge_function_call(FrontendMessage& m);
  Verdict lexing_hazard(std::string_view text, std::string& why) const;
  // Whether `m` waits for (or is refused by) the search_path check a policy with forbidden
  // tables needs; nothing to decide, the usual case, is told inline.
  bool search_path_pending(FrontendMessage& m) {
    if (path_ == PathCheck::None && !path_in_block_ && path_policy_ == host_.core().policy->id()) {
      return false;
    }
    return search_path_check(m);
  }
  bool search_path_check(FrontendMessage& m);
  static bool waits_for_check(const protocol::FrontendView& v) noexcept;
  // The query of the check's fourth statement: the roles named like the rule's forbidden
  // schemas that the session user may become ("" when the rule forbids no whole schema).
  std::string forbidden_roles_query();
  // Under a rule that forbids whole schemas, a statement that may change whose schema "$user"
  // names (a role change, a path naming "$user", RESET or DISCARD): the check runs again after
  // it. Refuses a Query that would run other statements after it unchecked. `text` is judged.
  void follow_path_user(FrontendMessage& m, std::string_view text);
  bool moves_path(policy::ClassSet classes) const noexcept;
  void bind_portal(const FrontendMessage& m);
  bool moving_portal(std::string_view portal) const noexcept;
  void forget_portals();

  struct Named {
    std::string text;              // empty when it was not kept (over kMaxTextBytes)
    bool kept = false;             // text kept for judging it again
    std::uint64_t policy = 0;      // the policy it was last judged under
    std::string refusal;           // it was refused: binding it is refused too
    bool moves_path_user = false;  // running it makes the search_path check due again
  };

  StageHost& host_;
  const policy::Rule* rule_ = nullptr;
  std::uint64_t rule_policy_ = 0;
  bool reloaded_ = false;  // the policy changed during the session
  MaskingStage* masking_ = nullptr;
  policy::Decision decision_;
  protocol::RecentByName<Named> named_;
  std::size_t named_bytes_ = 0;
  std::basic_string<std::byte> out_;
  // Rearm: a statement that moves "$user" was bound; its batch's Executes go, and the check is
  // due at the next statement or Sync.
  enum class PathCheck : std::uint8_t { None, Rearm, Due, Pending };
  PathCheck path_ = PathCheck::None;
  bool path_in_block_ = false;    // checked inside a transaction block: again once it has ended
  bool moves_path_user_ = false;  // the message being judged moves "$user" (follow_path_user)
  bool held_moves_path_user_ = false;  // so does the message held for approval
  bool stored_move_ = false;  // a PREPARE or DECLARE of a statement that moves the path ran
  // Every portal's Execute makes the check due, until no portal is left (the session idle with
  // nothing in flight): after a DECLARE that moves the path (its cursor is a portal), after a
  // reload that brought the check (portals bound before it were never classified), or past
  // kMaxMovingPortals.
  bool every_portal_moves_ = false;
  bool path_rule_ = false;  // the policy of path_policy_ checks the path
  // Portals bound to statements that move the path: their Executes make the check due again.
  static constexpr std::size_t kMaxMovingPortals = 64;
  std::vector<std::string> moving_portals_;
  std::uint64_t path_policy_ = 0;  // the policy the search_path was checked for
  // The check's answers, in order: search_path, role ("none" unless SET ROLE), session user;
  // and, when sent outside a transaction block, the roles the session user may become.
  std::string path_values_[3];
  unsigned path_rows_ = 0;     // bit i: the row of statement i came
  std::size_t path_done_ = 0;  // statements answered (CommandComplete)
  std::size_t path_sent_ = 0;  // statements sent
  bool path_failed_ = false;
  // The roles named like a forbidden schema that the session may become (pg_has_role MEMBER,
  // of the session user or the user that logged in), as last read; code the server runs (a
  // function, a view, a default) may make any of them the role, unseen.
  std::vector<std::string> members_;
  static constexpr std::size_t kMaxMembers = 4096;
  std::string roles_sql_;     // the query members_ was read with (forbidden_roles_query)
  bool roles_stale_ = false;  // a role statement ran since members_ was read
  std::string path_refusal_;  // the check failed: the session is ending
};

}  // namespace pgwarden::core
