// Masking of result values: profiles from the policy file (per group or user, first match wins)
// with column rules (by column name pattern, optionally by table) and content detectors (card
// numbers, SSNs, e-mails, phones, IBANs, custom patterns), each with an action: redact, partial,
// hash (a keyed, deterministic pseudonym) or null. Sans-I/O: the session hands whole messages in
// and forwards what comes out; one Masker per core.
//
// Type-aware: text types get a masked string in place of each finding (the rest of the value is
// kept, so JSON and arrays stay valid); any other type becomes NULL when it must change, so a
// masked value always parses as its column's type.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/pii.h"
#include "protocol/framer.h"
#include "protocol/result.h"

namespace simdjson::dom {
class element;
}

namespace pgwarden::policy {

// Whether a rule or profile for these users and groups (both empty: everyone) applies.
bool audience_matches(const std::vector<std::string>& users, const std::vector<std::string>& groups,
                      std::string_view identity, const std::vector<std::string>& caller_groups);

// Who a statement is for, as rules and masking profiles are matched: the user (identity, groups)
// and, when an agent acts for them (a token's "act"), that agent and the groups the policy's
// "may_act" gives it.
struct Who {
  std::string_view identity;
  const std::vector<std::string>* groups = nullptr;
  std::string_view actor;                                  // "": nobody acts for the user
  const std::vector<std::string>* actor_groups = nullptr;  // null: none
  // The whole act chain (`actor` first), when known: rules apply only while the policy lets
  // every agent in it act for the user (may_act); else the deny-everything rule does.
  const std::vector<std::string>* chain = nullptr;
};

// A rule or profile names actors or actor groups: it is for agents' sessions, and then also the
// user's users/groups (when given) must match. Returns whether such an audience takes `who`.
bool actor_audience_matches(const std::vector<std::string>& users,
                            const std::vector<std::string>& groups,
                            const std::vector<std::string>& actors,
                            const std::vector<std::string>& actor_groups, const Who& who);

// Case-insensitive match of `name` against a lower-case pattern where '*' matches any run.
bool glob_match(std::string_view pattern, std::string_view name);

enum class MaskAction : std::uint8_t { Redact, Partial, Hash, Null };
const char* mask_action_name(MaskAction a);

struct ColumnRule {
  std::string column;  // lower case; '*' matches any run of characters
  std::string schema;  // lower case; empty: any schema (table given) or any table (both empty)
  std::string table;
  MaskAction action = MaskAction::Redact;
};

constexpr std::size_t kBuiltinKinds = 5;  // PiiKind values before Custom

struct MaskProfile {
  std::string name;
  std::vector<std::string> groups;
  std::vector<std::string> users;
  std::vector<std::string> actors;  // for agents' sessions (see Policy::mask_profile)
  std::vector<std::string> actor_groups;
  bool exempt = false;  // sees raw values (recorded as such)
  std::vector<ColumnRule> columns;
  // "conditions": "refuse": a statement that names a masked column anywhere but in what it
  // returns or stores (a condition, a join, ORDER BY, GROUP BY, a window) is refused, so masked
  // values cannot be tested either (inference).
  bool refuse_conditions = false;
  std::array<std::optional<MaskAction>, kBuiltinKinds> detect{};  // by PiiKind
  std::vector<std::string> custom_names;
  std::vector<MaskAction> custom_actions;
  std::shared_ptr<const PiiDetectors> detectors;  // built-ins plus this profile's custom patterns

  bool matches(std::string_view identity, const std::vector<std::string>& caller_groups) const {
    return audience_matches(users, groups, identity, caller_groups);
  }
  bool for_agents() const noexcept { return !actors.empty() || !actor_groups.empty(); }
  bool scans() const noexcept { return detectors != nullptr; }
  // What a finding of `f` gets; nullopt when its detector is not enabled here.
  std::optional<MaskAction> action_for(const PiiFinding& f) const;
  // The catalog query that resolves this profile's column rules to (table OID, column number)
  // pairs, so aliases and table qualifiers work; empty when there are no column rules. Its rows:
  // attrelid, attnum, rule index.
  std::string catalog_query() const;
};

// Parses the policy file's "masking" array; `path` is its JSON path for errors.
protocol::Result<std::vector<MaskProfile>> parse_masking(const simdjson::dom::element& e,
                                                         const std::string& file);

// How a column's values are handled, from its type OID.
enum class ValueKind : std::uint8_t {
  Text,       // text, varchar, bpchar, name, char, unknown: findings replaced in place
  TextArray,  // arrays of text types (text format): findings replaced in place
  Json,       // json, jsonb (text format): findings inside JSON strings replaced, else NULL
  Integer,    // int4, int8: scanned as decimal (binary decoded), NULL on a finding
  Numeric,    // numeric: as Integer
  NoPii,      // bool, dates, times, uuid, floats, int2, inet...: not scanned
  Other,      // anything else: scanned as bytes, NULL on a finding
};
ValueKind value_kind(std::uint32_t type_oid, bool binary);

// Column (table OID, attribute number) pairs a profile masks, from its catalog query; attribute
// 0 (a whole row of the table, which the RowDescription gives for SELECT t FROM t) of each table
// with a masked column too.
struct MaskedAttrs {
  std::unordered_map<std::uint64_t, MaskAction> action_of;  // (oid << 16 | attnum) -> action
  static std::uint64_t key(std::uint32_t oid, std::int16_t attnum) {
    return (std::uint64_t{oid} << 16) | static_cast<std::uint16_t>(attnum);
  }
};

// The type of a value nothing describes (rows of unknown shape, binary COPY fields).
inline constexpr std::uint32_t kUnknownType = 0xffffffffu;

struct MaskColumn {
  ValueKind kind = ValueKind::Other;
  bool binary = false;
  std::uint32_t type_oid = 0;
  std::optional<MaskAction> rule;  // a column rule applies
};

// The masking plan of one result (from its RowDescription and the formats in effect).
struct ResultPlan {
  std::vector<MaskColumn> columns;
  bool known = false;   // false: no RowDescription seen, every value is handled blind
  bool active = false;  // something to do for at least one column
};

// Rules for the columns of a result the server computed (no table in the RowDescription), from
// what the statement computed them from (policy/output_reads.h): per position when the
// statement's outputs map one to one to the result's columns, else one for all.
struct ComputedRules {
  std::vector<std::optional<MaskAction>> by_position;
  std::optional<MaskAction> any;  // columns past by_position, or all when not positional
  bool active() const noexcept;
};

// Builds the plan for a whole RowDescription message. `formats` are Bind's result format codes
// (empty: those in the RowDescription). False if the message is malformed.
bool build_plan(const MaskProfile& profile, const MaskedAttrs* attrs,
                protocol::Bytes row_description, std::string_view formats, ResultPlan& plan,
                const ComputedRules* computed = nullptr);

struct MaskCounts {
  std::uint64_t values = 0;  // values changed (masked or nulled)
  std::uint64_t nulled = 0;  // of which became NULL
};

// One per core. Not thread-safe.
class Masker {
 public:
  explicit Masker(std::string key) : key_(std::move(key)) {}

  // A whole DataRow under `plan`: true when something changed, with the new message in `out`;
  // false when it goes to the client unchanged.
  bool mask_row(const MaskProfile& p, const ResultPlan& plan, protocol::Bytes row,
                std::basic_string<std::byte>& out);
  // Free text (COPY rows, error fields, recorded statements): each finding replaced (null acts as
  // redact). `same_length` keeps every byte offset (binary COPY). True when `out` differs.
  bool mask_text(const MaskProfile& p, std::string_view in, std::string& out,
                 bool same_length = false);
  // One CopyData of a binary COPY TO: each field with a finding becomes NULL (COPY does not
  // say its types: each is looked into every way it could be read). `header` is true for the
  // COPY's first message, which carries the file header, and is cleared once it is read.
  bool mask_binary_copy(const MaskProfile& p, std::string_view in, bool& header, std::string& out);
  // A whole ErrorResponse/NoticeResponse: every human-readable field masked.
  bool mask_error(const MaskProfile& p, protocol::Bytes message, std::basic_string<std::byte>& out);
  // The whole-value result of a column rule for a text value. `partial` keeps what it keeps of
  // a card number, SSN, phone, IBAN or e-mail only when the value is one (built-in detectors);
  // any other value (a placeholder, a malformed one) is hidden whole.
  void apply_whole(MaskAction a, std::string_view value, std::string& out);
  const MaskCounts& counts() const noexcept { return counts_; }
  // Values replaced, by what found them: a PiiKind's detector, or kByColumnRule (for /metrics:
  // read by another thread, written only by this core's).
  static constexpr std::size_t kByColumnRule = static_cast<std::size_t>(PiiKind::Custom) + 1;
  static const char* detector_name(std::size_t i) noexcept;
  std::uint64_t replaced_by(std::size_t i) const noexcept {
    return by_detector_[i].load(std::memory_order_relaxed);
  }

 private:
  enum class Verdict : std::uint8_t { Keep, Replace, Null };
  Verdict mask_value(const MaskProfile& p, const MaskColumn& c, std::string_view v,
                     std::string& out);
  bool scan(const MaskProfile& p, std::string_view v);  // fills found_ with enabled findings
  bool text_has_pii(const MaskProfile& p, std::string_view text);
  bool unknown_has_pii(const MaskProfile& p, std::uint32_t oid, std::string_view v, int depth);
  void replace_findings(const MaskProfile& p, std::string_view v, std::string& out,
                        bool same_length);
  void apply_finding(MaskAction a, const PiiFinding& f, std::string_view span,
                     std::string& out) const;
  std::string key_;
  PiiScanner scanner_;
  PiiScanner whole_scanner_;  // built-in detectors for partial column rules (own scratch)
  std::vector<PiiFinding> whole_found_;
  std::vector<PiiFinding> found_;
  std::vector<std::string> values_;  // per column, reused
  std::vector<Verdict> verdicts_;
  std::string decimal_;
  MaskCounts counts_;
  std::array<std::atomic<std::uint64_t>, kByColumnRule + 1> by_detector_{};
  void note_replaced(std::size_t i) noexcept {
    by_detector_[i].store(by_detector_[i].load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
  }
};

}  // namespace pgwarden::policy
