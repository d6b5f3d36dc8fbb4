#include "policy/client_auth.h"

#include <algorithm>

#include "policy/internal_login.h"

namespace pgwarden::policy {

namespace pr = pgwarden::protocol;

namespace {

pr::Error rejected(std::string why) {
  return pr::Error{pr::Errc::Rejected, std::move(why)};
}

// Splits text into trimmed, non-empty, non-comment lines with their 1-based numbers.
template <class F>
bool for_each_line(std::string_view text, F&& f) {
  std::size_t number = 0;
  while (!text.empty()) {
    ++number;
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    if (!f(line, number)) return false;
  }
  return true;
}

std::pair<std::string_view, std::string_view> split_word(std::string_view line) {
  const std::size_t sp = line.find_first_of(" \t");
  if (sp == std::string_view::npos) return {line, {}};
  std::string_view rest = line.substr(sp);
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  return {line.substr(0, sp), rest};
}

}  // namespace

const StaticUser* AuthConfig::find_user(std::string_view name) const {
  for (const StaticUser& u : users) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

const RoleMapping* AuthConfig::map_groups(const std::vector<std::string>& groups) const {
  for (const RoleMapping& m : roles) {
    if (std::find(groups.begin(), groups.end(), m.group) != groups.end()) return &m;
  }
  return nullptr;
}

pr::Result<std::vector<RoleMapping>> parse_role_mappings(std::string_view policy_json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(policy_json.data(), policy_json.size()).get(doc) != simdjson::SUCCESS) {
    return rejected("policy: not valid JSON");
  }
  simdjson::dom::array list;
  if (doc["role_mappings"].get_array().get(list) != simdjson::SUCCESS) {
    return rejected("policy: $.role_mappings must be an array");
  }
  std::vector<RoleMapping> out;
  std::size_t i = 0;
  for (simdjson::dom::element e : list) {
    const std::string where = "policy: $.role_mappings[" + std::to_string(i++) + "]";
    std::string_view group, role, database;
    if (e["group"].get_string().get(group) != simdjson::SUCCESS || group.empty()) {
      return rejected(where + ".group must be a non-empty string");
    }
    if (e["role"].get_string().get(role) != simdjson::SUCCESS || role.empty()) {
      return rejected(where + ".role must be a non-empty string");
    }
    if (e["database"].error() != simdjson::NO_SUCH_FIELD &&
        e["database"].get_string().get(database) != simdjson::SUCCESS) {
      return rejected(where + ".database must be a string");
    }
    bool allow_role_change = false;
    if (e["allow_role_change"].error() != simdjson::NO_SUCH_FIELD &&
        e["allow_role_change"].get_bool().get(allow_role_change) != simdjson::SUCCESS) {
      return rejected(where + ".allow_role_change must be true or false");
    }
    out.push_back(RoleMapping{std::string(group), std::string(role), std::string(database),
                              allow_role_change});
  }
  return out;
}

pr::Result<std::vector<StaticUser>> parse_users_file(std::string_view text) {
  std::vector<StaticUser> out;
  std::string error;
  for_each_line(text, [&](std::string_view line, std::size_t n) {
    auto [name, rest] = split_word(line);
    auto [verifier_text, groups_text] = split_word(rest);
    auto verifier = pr::ScramVerifier::parse(verifier_text);
    if (!verifier) {
      error = "users file line " + std::to_string(n) +
              ": expected 'name SCRAM-SHA-256$<iter>:<salt>$<stored>:<server> [groups]' "
              "(plain passwords are not accepted)";
      return false;
    }
    StaticUser u{std::string(name), *verifier, {}};
    while (!groups_text.empty()) {
      const std::size_t comma = groups_text.find(',');
      if (const auto g = groups_text.substr(0, comma); !g.empty()) u.groups.emplace_back(g);
      groups_text.remove_prefix(comma == std::string_view::npos ? groups_text.size() : comma + 1);
    }
    out.push_back(std::move(u));
    return true;
  });
  if (!error.empty()) return rejected(error);
  return out;
}

pr::Result<std::map<std::string, std::string, std::less<>>> parse_secrets(std::string_view text) {
  std::map<std::string, std::string, std::less<>> out;
  std::string error;
  for_each_line(text, [&](std::string_view line, std::size_t n) {
    auto [role, password] = split_word(line);
    if (password.empty()) {
      error = "secrets file line " + std::to_string(n) + ": expected 'role password'";
      return false;
    }
    out.emplace(std::string(role), std::string(password));
    return true;
  });
  if (!error.empty()) return rejected(error);  // never echo the line: it holds a secret
  return out;
}

pr::Result<pr::ByteString> ClientAuth::start(std::string_view channel_binding) {
  pr::ByteString out;
  static_user_ = config_.find_user(user_);
  if (static_user_ != nullptr) {
    scram_.emplace(static_user_->verifier);
    stage_ = Stage::ScramInitial;
    std::string mechanisms;
    if (!channel_binding.empty()) {
      scram_->offer_channel_binding(std::string(channel_binding));
      mechanisms.append(pr::kScramSha256Plus);
      mechanisms.append(1, '\0');
    }
    mechanisms.append(pr::kScramSha256);
    mechanisms.append(1, '\0');
    mechanisms.append(1, '\0');
    pr::append_auth_request(out, pr::AuthCode::Sasl, mechanisms);
    return out;
  }
  if (config_.internal != nullptr && user_.starts_with(InternalLogins::kUserPrefix)) {
    stage_ = Stage::Internal;
    pr::append_auth_request(out, pr::AuthCode::CleartextPassword);
    return out;
  }
  if (config_.jwks == nullptr)
    return rejected("no static user \"" + user_ + "\" and OIDC is not configured");
  stage_ = Stage::Token;
  pr::append_auth_request(out, pr::AuthCode::CleartextPassword);
  return out;
}

pr::Result<ClientAuth::Step> ClientAuth::on_message(pr::Bytes message, std::int64_t now) {
  switch (stage_) {
    case Stage::Internal: {
      const auto password = pr::read_password_message(message);
      if (!password) return rejected("malformed password message");
      auto c = config_.internal->take(user_, *password, now);
      if (!c) return rejected("not a pending internal login (expired, used or wrong password)");
      principal_ = std::move(c->principal);
      auto step = finish(std::move(c->groups), "mcp", 0, std::move(c->identity));
      caller_.actors = std::move(c->actors);
      caller_.client_id = std::move(c->client_id);
      return step;
    }
    case Stage::Token: {
      const auto token = pr::read_password_message(message);
      if (!token) return rejected("malformed password message");
      const auto keys = config_.jwks->get();
      if (keys == nullptr) return rejected("the identity provider's keys are not loaded yet");
      auto id = verifier_.verify(*token, *keys, now);
      if (!id) {
        if (verifier_.last_kid_unknown()) config_.jwks->request_refresh();
        return id.error();
      }
      if (id->identity != user_) {
        return rejected("token identity \"" + id->identity + "\" is not the user name \"" + user_ +
                        "\"");
      }
      principal_ = std::move(id->principal);
      auto step = finish(std::move(id->groups), "oidc", id->expires_at, std::move(id->identity));
      caller_.actors = std::move(id->actors);
      caller_.client_id = std::move(id->client_id);
      return step;
    }
    case Stage::ScramInitial: {
      const auto initial = pr::read_sasl_initial_response(message);
      if (!initial) return rejected("malformed SASLInitialResponse");
      // The -PLUS mechanism goes with a binding gs2 header, and only with one.
      const bool bound = initial->data.substr(0, 2) == "p=";
      if (!((initial->mechanism == pr::kScramSha256 && !bound) ||
            (initial->mechanism == pr::kScramSha256Plus && bound))) {
        return rejected("SASL mechanism and channel binding disagree");
      }
      auto first = scram_->on_client_first(initial->data);
      if (!first) return first.error();
      stage_ = Stage::ScramFinal;
      Step step;
      pr::append_auth_request(step.reply, pr::AuthCode::SaslContinue, *first);
      return step;
    }
    case Stage::ScramFinal: {
      const auto response = pr::read_sasl_response(message);
      if (!response) return rejected("malformed SASL response");
      auto fin = scram_->on_client_final(*response);
      if (!fin) return fin.error();
      principal_ = "static:" + user_;
      auto step = finish(static_user_->groups, "scram", 0, user_);
      if (!step) return step;
      pr::ByteString reply;
      pr::append_auth_request(reply, pr::AuthCode::SaslFinal, *fin);
      reply.append(step->reply);
      step.value().reply = std::move(reply);
      return step;
    }
    case Stage::Start:
    case Stage::Done:
      break;
  }
  return rejected("unexpected authentication message");
}

pr::Result<ClientAuth::Step> ClientAuth::finish(std::vector<std::string> groups, const char* method,
                                                std::int64_t expires_at, std::string identity) {
  const RoleMapping* mapping = config_.map_groups(groups);
  if (mapping == nullptr) return rejected("no role mapping for the groups of \"" + identity + "\"");
  if (config_.upstream_passwords.find(mapping->role) == config_.upstream_passwords.end()) {
    return rejected("no upstream credential for role \"" + mapping->role + "\"");
  }
  stage_ = Stage::Done;
  caller_ = AuthenticatedCaller{std::move(identity),
                                std::move(groups),
                                method,
                                expires_at,
                                mapping,
                                std::move(principal_),
                                {},
                                {}};
  return Step{{}, true};
}

}  // namespace pgwarden::policy
