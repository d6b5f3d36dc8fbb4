// The policy file's "masking" profiles: parsed and validated whole (file, JSON path, reason).
#include <simdjson.h>

#include "policy/classifier.h"
#include "policy/masking.h"
#include "policy/phone.h"
#include "policy/policy_json.h"

namespace pgwarden::policy {

namespace {

namespace sj = simdjson;
namespace pr = pgwarden::protocol;

std::optional<MaskAction> action_from(std::string_view s) {
  if (s == "redact") return MaskAction::Redact;
  if (s == "partial") return MaskAction::Partial;
  if (s == "hash") return MaskAction::Hash;
  if (s == "null") return MaskAction::Null;
  return std::nullopt;
}

constexpr std::string_view kActions = "redact, partial, hash or null";

}  // namespace

pr::Result<std::vector<MaskProfile>> parse_masking(const sj::dom::element& e,
                                                   const std::string& file) {
  std::vector<MaskProfile> out;
  sj::dom::array profiles;
  if (e.get_array().get(profiles) != sj::SUCCESS) {
    return policy_error(file, "$.masking", "must be an array of masking profiles");
  }
  std::size_t index = 0;
  for (sj::dom::element pe : profiles) {
    const std::string at = "$.masking[" + std::to_string(index++) + "]";
    sj::dom::object po;
    if (pe.get_object().get(po) != sj::SUCCESS) return policy_error(file, at, "must be an object");
    MaskProfile p;
    std::vector<std::string> custom_patterns;
    std::vector<std::string> phone_regions;
    for (auto f : po) {
      const std::string k(f.key);
      const std::string path = at + "." + k;
      if (k == "name") {
        if (!json_name(f.value, p.name))
          return policy_error(file, path, "must be a non-empty string");
      } else if (k == "groups" || k == "users" || k == "actors" || k == "actor_groups") {
        std::vector<std::string>& dst = k == "groups"   ? p.groups
                                        : k == "users"  ? p.users
                                        : k == "actors" ? p.actors
                                                        : p.actor_groups;
        if (!json_strings(f.value, dst)) {
          return policy_error(file, path, "must be an array of strings");
        }
      } else if (k == "exempt") {
        if (f.value.get_bool().get(p.exempt) != sj::SUCCESS) {
          return policy_error(file, path, "must be true or false");
        }
      } else if (k == "conditions") {
        std::string_view v;
        if (f.value.get_string().get(v) != sj::SUCCESS || (v != "refuse" && v != "allow")) {
          return policy_error(file, path, "must be \"allow\" (the default) or \"refuse\"");
        }
        p.refuse_conditions = v == "refuse";
      } else if (k == "columns") {
        sj::dom::array cols;
        if (f.value.get_array().get(cols) != sj::SUCCESS) {
          return policy_error(file, path, "must be an array of column rules");
        }
        std::size_t ci = 0;
        for (sj::dom::element ce : cols) {
          const std::string cat = path + "[" + std::to_string(ci++) + "]";
          sj::dom::object co;
          if (ce.get_object().get(co) != sj::SUCCESS)
            return policy_error(file, cat, "must be an object");
          ColumnRule r;
          bool have_action = false;
          for (auto cf : co) {
            const std::string ck(cf.key);
            std::string_view s;
            if (ck != "comment" && cf.value.get_string().get(s) != sj::SUCCESS) {
              return policy_error(file, cat + "." + ck, "must be a string");
            }
            if (ck == "column") {
              r.column = ascii_lower(s);
            } else if (ck == "table") {
              const std::string t = ascii_lower(s);
              const std::size_t dot = t.find('.');
              r.schema = dot == std::string::npos ? "" : t.substr(0, dot);
              r.table = dot == std::string::npos ? t : t.substr(dot + 1);
              if (r.table.empty() || r.table.find('.') != std::string::npos ||
                  (dot != std::string::npos && r.schema.empty())) {
                return policy_error(file, cat + ".table", "expected table or schema.table");
              }
            } else if (ck == "action") {
              const auto a = action_from(s);
              if (!a)
                return policy_error(file, cat + ".action", "must be " + std::string(kActions));
              r.action = *a;
              have_action = true;
            } else if (ck != "comment") {
              return policy_error(file, cat + "." + ck,
                                  "unknown key (expected column, table, action, comment)");
            }
          }
          if (r.column.empty() ||
              r.column.find_first_of(std::string_view("\0", 1)) != std::string::npos) {
            return policy_error(file, cat + ".column",
                                "every column rule needs a column name pattern");
          }
          if (!have_action)
            return policy_error(file, cat + ".action", "missing (" + std::string(kActions) + ")");
          p.columns.push_back(std::move(r));
        }
      } else if (k == "detectors") {
        sj::dom::object dets;
        if (f.value.get_object().get(dets) != sj::SUCCESS) {
          return policy_error(file, path, "must be an object of detector: action");
        }
        for (auto df : dets) {
          const std::string dk(df.key);
          std::size_t kind = kBuiltinKinds;
          for (std::size_t i = 0; i < kBuiltinKinds; ++i) {
            if (dk == pii_kind_name(static_cast<PiiKind>(i))) kind = i;
          }
          if (kind == kBuiltinKinds) {
            return policy_error(file, path + "." + dk,
                                "unknown detector (expected card_number, ssn, email, phone, iban)");
          }
          std::string_view s;
          const auto a =
              df.value.get_string().get(s) == sj::SUCCESS ? action_from(s) : std::nullopt;
          if (!a) return policy_error(file, path + "." + dk, "must be " + std::string(kActions));
          p.detect[kind] = *a;
        }
      } else if (k == "phone_regions") {
        sj::dom::array regions;
        if (f.value.get_array().get(regions) != sj::SUCCESS) {
          return policy_error(file, path, "must be an array of region codes (\"US\", \"GB\"...)");
        }
        std::size_t ri = 0;
        for (sj::dom::element re : regions) {
          std::string_view code;
          const std::string rat = path + "[" + std::to_string(ri++) + "]";
          if (re.get_string().get(code) != sj::SUCCESS || !phone_region_supported(code)) {
            return policy_error(file, rat,
                                "not a region libphonenumber knows (ISO 3166, e.g. \"GB\")");
          }
          phone_regions.emplace_back(code);
        }
      } else if (k == "custom") {
        sj::dom::array cs;
        if (f.value.get_array().get(cs) != sj::SUCCESS) {
          return policy_error(file, path, "must be an array of {name, pattern, action}");
        }
        std::size_t ci = 0;
        for (sj::dom::element ce : cs) {
          const std::string cat = path + "[" + std::to_string(ci++) + "]";
          std::string_view name, pattern, action;
          if (ce["name"].get_string().get(name) != sj::SUCCESS || name.empty() ||
              ce["pattern"].get_string().get(pattern) != sj::SUCCESS || pattern.empty() ||
              ce["action"].get_string().get(action) != sj::SUCCESS) {
            return policy_error(file, cat, "needs string members name, pattern and action");
          }
          const auto a = action_from(action);
          if (!a) return policy_error(file, cat + ".action", "must be " + std::string(kActions));
          p.custom_names.emplace_back(name);
          p.custom_actions.push_back(*a);
          custom_patterns.emplace_back(pattern);
        }
      } else if (k != "comment") {
        return policy_error(file, path,
                            "unknown key (expected name, groups, users, actors, actor_groups, "
                            "exempt, columns, conditions, "
                            "detectors, phone_regions, custom, comment)");
      }
    }
    if (p.name.empty())
      return policy_error(file, at + ".name", "every masking profile needs a name");
    const bool any_detector =
        std::any_of(p.detect.begin(), p.detect.end(), [](const auto& a) { return a.has_value(); });
    if (p.exempt && (any_detector || !p.columns.empty() || !custom_patterns.empty())) {
      return policy_error(file, at, "an exempt profile sees raw values: it cannot also mask");
    }
    if (any_detector || !custom_patterns.empty()) {
      auto d = PiiDetectors::build(custom_patterns, phone_regions);
      if (!d) return policy_error(file, at + ".custom", d.error().message);
      p.detectors = *d;
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace pgwarden::policy
