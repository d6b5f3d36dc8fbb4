// Statement policy: rules per group or user (first match wins), each with classes denied or
// held for approval, read-only, denylist regular expressions (Hyperscan), and forbidden tables;
// and PolicyEngine, one per core, that judges a statement text under a rule with a decision
// cache. The policy is parsed from the --policy JSON file, validated whole (file, JSON path,
// reason), and immutable once built: a reload builds a new one.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policy/classifier.h"
#include "policy/masking.h"
#include "protocol/by_name.h"
#include "protocol/result.h"

namespace pgwarden::policy {

struct Rule {
  std::string name;
  std::vector<std::string> groups;  // caller in any of these groups...
  std::vector<std::string> users;   // ... or with one of these identities / user names
  // A rule naming actors or actor groups is for sessions where one of these agents acts for the
  // user (and then users/groups, when given, narrow the user); only such rules apply to them.
  std::vector<std::string> actors;
  std::vector<std::string> actor_groups;
  ClassSet deny = 0;
  ClassSet approve = 0;  // require_approval
  ClassSet allow = 0;    // explicit exceptions to deny / read_only
  bool read_only = false;
  // Replication connections (the `replication` startup parameter) are let through for the
  // rule's callers, as raw streams: pg_basebackup and standbys copy the whole database unmasked
  // and unjudged, so only a rule naming them allows it.
  bool replication = false;
  std::vector<std::string> denylist;
  std::shared_ptr<hs_database> denylist_db;
  std::vector<std::string> forbidden_tables;  // "schema.table", "table" or "schema.*"
  bool parse_all = false;  // the rule restricts classes the pre-filter cannot tell apart
  // Who decides the statements this rule holds (groups; empty: the policy's admins), and how
  // many distinct approvers it takes. Nobody decides their own statement.
  std::vector<std::string> approvers;
  unsigned approvals_required = 1;
  // JIT grant: once approved, the same caller runs the same statement shape (constants aside)
  // under this rule without a new hold for this long (0: every statement is held).
  std::int64_t grant_seconds = 0;

  bool matches(std::string_view identity, const std::vector<std::string>& caller_groups) const {
    return audience_matches(users, groups, identity, caller_groups);
  }
  bool for_agents() const noexcept { return !actors.empty() || !actor_groups.empty(); }
  ClassSet denied() const;  // deny (+ writes when read-only), minus allow
};

// "may_act": which agents may act for users (a token's "act"), for whom, and in which groups
// rules and masking profiles see them.
struct MayAct {
  std::string actor;                    // the agent's "sub" in the token's act claim
  std::vector<std::string> for_groups;  // empty: for anyone
  std::vector<std::string> actor_groups;
};

enum class Action : std::uint8_t { Allow, Deny, Hold };

struct Decision {
  Action action = Action::Allow;
  const Rule* rule = nullptr;  // null: no rule applies
  std::string reason;          // for Deny/Hold: the class, pattern or table
  ClassSet classes = 0;
};

class Policy {
 public:
  // `file` names the source in error messages.
  static protocol::Result<std::shared_ptr<const Policy>> parse(std::string_view json,
                                                               const std::string& file);
  // The first rule for the caller. A session where an agent acts for the user is matched only by
  // rules for agents; when none takes it (or the agent may no longer act for the user) it gets
  // a rule that denies every statement.
  const Rule* match(const Who& who) const;
  const Rule* match(std::string_view identity, const std::vector<std::string>& groups) const {
    return match(Who{identity, &groups, {}, nullptr});
  }
  const std::vector<Rule>& rules() const noexcept { return rules_; }
  // The first masking profile for the caller; null: none applies (values go out as they are).
  // An agent's session takes the first profile for agents that matches it, else the first
  // profile for the user as if nobody acted for them.
  const MaskProfile* mask_profile(const Who& who) const;
  const MaskProfile* mask_profile(std::string_view identity,
                                  const std::vector<std::string>& groups) const {
    return mask_profile(Who{identity, &groups, {}, nullptr});
  }
  // The "may_act" entry that lets `actor` act for a user in `groups`; null: it may not.
  const MayAct* may_act(std::string_view actor, const std::vector<std::string>& groups) const;
  // Whether any rule takes `who` (an agent's session) other than the deny-everything one.
  bool has_rule_for(const Who& who) const { return match(who) != &no_agent_rule_; }
  const std::vector<MaskProfile>& masking() const noexcept { return masking_; }
  const Prefilter& prefilter() const noexcept { return *prefilter_; }
  const std::vector<std::string>& dangerous_functions() const noexcept { return dangerous_; }
  std::uint64_t id() const noexcept { return id_; }
  // Groups that administer the gateway (sessions, kill, lock, reload) and decide holds of
  // rules that name no approvers.
  const std::vector<std::string>& admins() const noexcept { return admins_; }
  const std::vector<std::string>& approvers_of(const Rule& r) const noexcept {
    return r.approvers.empty() ? admins_ : r.approvers;
  }
  // The first schema of a search_path value that `only` (or, when null, any rule: before
  // authentication the caller's rule is not known) forbids whole ("schema.*"), or "".
  std::string forbidden_schema_in(std::string_view search_path, const Rule* only = nullptr) const;

 private:
  std::vector<Rule> rules_;
  std::vector<MaskProfile> masking_;
  std::vector<std::string> dangerous_;
  std::vector<std::string> admins_;
  std::vector<MayAct> may_act_;
  Rule no_agent_rule_;
  std::shared_ptr<const Prefilter> prefilter_;
  std::uint64_t id_ = 0;
};

// The hash of a text or shape for the policy engine's and masking's caches (see
// protocol::text_hash). Only for caches that compare their whole key: a collision is a miss,
// never a wrong answer.
using protocol::text_hash;

// The key shared by texts that differ only in numeric constants, or false when the text has
// quotes, dollar quoting, comments, backslashes, control or non-ASCII bytes. With
// `number_before_d`: whether a number is followed at once by "d" or "D" (Prefilter's
// same_for_numbers). Exposed for tests.
// With `digits`: how many digits the text holds; with `signed_exponent`, whether a number's
// exponent has a "+" (to the PII gate, a "+" before a digit may start a phone number).
bool shape_of(std::string_view sql, std::string& out, bool* number_before_d = nullptr,
              std::size_t* digits = nullptr, bool* signed_exponent = nullptr);
// Whether no built-in PII detector (policy/pii.h) can match a text of this shape with fewer than
// 9 digits in all: no '@', no '+' (a number may follow it), no '%' or '&' (escapes a look-alike
// may hide behind), and no two capitals followed by two digits (an IBAN's start, whose digits
// follow a letter and so are in the shape as written). A run of 9 digits needs 9 digits.
bool shape_free_of_builtin_pii(std::string_view shape) noexcept;

// The error text a client gets for a refused statement.
std::string refusal_message(const Decision& d);

// One per core: the classifier, Hyperscan scratch and a decision cache keyed by statement text,
// so repeated texts and prepared statements are judged once. Not thread-safe.
class PolicyEngine {
 public:
  PolicyEngine();
  ~PolicyEngine();
  PolicyEngine(const PolicyEngine&) = delete;
  PolicyEngine& operator=(const PolicyEngine&) = delete;

  Decision judge(const Policy& policy, const Rule* rule, std::string_view sql);
  // The statement's classes when no rule judged it (masking needs to see COPY TO and DDL).
  ClassSet classes_of(const Policy& policy, std::string_view sql) {
    return classes_of(policy, sql, false);
  }
  // The same, parsed even where the pre-filter would take the text for a plain read.
  ClassSet parsed_classes_of(const Policy& policy, std::string_view sql) {
    return classes_of(policy, sql, true);
  }
  std::uint64_t cache_hits() const noexcept { return hits_; }
  // Each judge() call's number (from 1): what it learnt of its text is asked for by it, so a
  // stage need not compare texts. A caller keeps the number of the call that judged its text.
  std::uint64_t serial() const noexcept { return serial_; }
  // The shape (shape_of) of the text judged by call `serial`, when that was the last call and the
  // text had one: a stage that keys its own cache by shape need not read the statement again.
  // The view lives until the next judge(). `hash`, when given, gets text_hash of the shape
  // (already computed for the engine's cache).
  bool last_shape(std::uint64_t serial, std::string_view& shape,
                  std::size_t* hash = nullptr) const noexcept {
    if (serial != serial_ || !shaped_) return false;
    shape = shape_;
    if (hash != nullptr) *hash = shape_hash_;
    return true;
  }
  // Whether the text judged by call `serial` (the last one) is one no built-in PII detector can
  // match, as its shape shows (shape_free_of_builtin_pii) with fewer than 9 digits in all: a
  // stage that masks the text need not scan it. False whenever unsure (no shape, another call).
  bool last_free_of_builtin_pii(std::uint64_t serial) const noexcept {
    return serial == serial_ && shaped_ && shape_pii_free_ && numbers_pii_free_;
  }

 private:
  ClassSet classes_of(const Policy& policy, std::string_view sql, bool always_parse);
  struct Entry;
  void adopt(const Policy& policy);
  Decision decide(const Rule& rule, const Analysis& a);
  bool denylisted(const Rule& rule, std::string_view sql, Decision& d);
  Classifier classifier_;
  hs_scratch* scratch_ = nullptr;  // sized for every denylist of the current policy
  std::uint64_t policy_id_ = 0;
  std::unique_ptr<Entry[]> cache_;        // by exact text
  std::unique_ptr<Entry[]> shape_cache_;  // by text with numbers replaced (shape_of)
  std::unique_ptr<Entry[]> plain_cache_;  // by shape, of plain reads (no pre-filter keyword)
  std::string shape_;
  std::uint64_t serial_ = 0;  // judge() calls so far
  std::size_t shape_hash_ = 0;
  bool shaped_ = false;
  bool shape_pii_free_ = false;    // shape_free_of_builtin_pii(shape_)
  bool numbers_pii_free_ = false;  // the text has under 9 digits and no "e+" exponent
  std::uint64_t hits_ = 0;
};

}  // namespace pgwarden::policy
