#include "policy/jwt.h"

#include <algorithm>
#include <optional>

namespace pgwarden::policy {

namespace pr = pgwarden::protocol;

namespace {

pr::Error rejected(std::string why) {
  return pr::Error{pr::Errc::Rejected, std::move(why)};
}

std::optional<pr::SigAlg> sig_alg(std::string_view name) {
  if (name == "RS256") return pr::SigAlg::RS256;
  if (name == "ES256") return pr::SigAlg::ES256;
  if (name == "EdDSA") return pr::SigAlg::EdDSA;
  return std::nullopt;  // "none", HMAC and everything else: never accepted
}

std::optional<std::string_view> string_member(simdjson::dom::object obj, std::string_view key) {
  std::string_view v;
  if (obj[key].get_string().get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

bool has_member(simdjson::dom::object obj, std::string_view key) {
  return obj[key].error() != simdjson::NO_SUCH_FIELD;
}

std::optional<double> number_member(simdjson::dom::object obj, std::string_view key) {
  simdjson::dom::element e;
  if (obj[key].get(e) != simdjson::SUCCESS || !e.is_number()) return std::nullopt;
  double d = 0;
  if (e.get_double().get(d) != simdjson::SUCCESS) return std::nullopt;
  return d;
}

// Names end up in logs, application_name and role mapping: no control characters, bounded.
bool printable(std::string_view s, std::size_t max_len) {
  if (s.empty() || s.size() > max_len) return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// RFC 7519 section 4: a JSON object that repeats a member name has no one reading (parsers take
// the first or the last); a token with one anywhere is refused rather than guessed at.
bool repeats_a_name(simdjson::dom::element e, std::vector<std::string_view>& scratch) {
  simdjson::dom::object obj;
  simdjson::dom::array arr;
  if (e.get_object().get(obj) == simdjson::SUCCESS) {
    const std::size_t from = scratch.size();
    for (auto field : obj) scratch.push_back(field.key);
    std::sort(scratch.begin() + static_cast<std::ptrdiff_t>(from), scratch.end());
    const bool repeated = std::adjacent_find(scratch.begin() + static_cast<std::ptrdiff_t>(from),
                                             scratch.end()) != scratch.end();
    scratch.resize(from);
    if (repeated) return true;
    for (auto field : obj) {
      if (repeats_a_name(field.value, scratch)) return true;
    }
  } else if (e.get_array().get(arr) == simdjson::SUCCESS) {
    for (simdjson::dom::element v : arr) {
      if (repeats_a_name(v, scratch)) return true;
    }
  }
  return false;
}

std::optional<std::string> b64_member(simdjson::dom::object obj, std::string_view key) {
  const auto v = string_member(obj, key);
  if (!v) return std::nullopt;
  return pr::base64url_decode(*v);
}

}  // namespace

pr::Result<std::shared_ptr<const Jwks>> Jwks::parse(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS) {
    return rejected("JWKS is not valid JSON");
  }
  simdjson::dom::array keys;
  if (doc["keys"].get_array().get(keys) != simdjson::SUCCESS) {
    return rejected("JWKS has no \"keys\" array");
  }
  auto out = std::make_shared<Jwks>();
  std::size_t index = 0;
  for (simdjson::dom::element k : keys) {
    const std::string where = "JWKS key #" + std::to_string(index++);
    simdjson::dom::object obj;
    if (k.get_object().get(obj) != simdjson::SUCCESS) return rejected(where + " is not an object");
    const auto kty = string_member(obj, "kty");
    if (!kty) return rejected(where + " has no \"kty\"");
    if (const auto use = string_member(obj, "use"); use && *use != "sig") continue;
    const std::string kid(string_member(obj, "kid").value_or(""));
    const std::string alg(string_member(obj, "alg").value_or(""));
    std::optional<pr::PublicKey> key;
    if (*kty == "RSA") {
      const auto n = b64_member(obj, "n");
      const auto e = b64_member(obj, "e");
      if (n && e) key = pr::PublicKey::rsa(*n, *e);
    } else if (*kty == "EC") {
      if (string_member(obj, "crv") != "P-256") continue;  // other curves: not supported
      const auto x = b64_member(obj, "x");
      const auto y = b64_member(obj, "y");
      if (x && y) key = pr::PublicKey::p256(*x, *y);
    } else if (*kty == "OKP") {
      if (string_member(obj, "crv") != "Ed25519") continue;
      if (const auto x = b64_member(obj, "x")) key = pr::PublicKey::ed25519(*x);
    } else {
      continue;  // "oct" (shared secrets) and unknown types are never used
    }
    if (!key)
      return rejected(where + " (kid \"" + kid + "\") is not a valid " + std::string(*kty) +
                      " key");
    if (!alg.empty() && sig_alg(alg) != key->alg()) {
      return rejected(where + " (kid \"" + kid + "\") declares alg " + alg + " for a " +
                      std::string(*kty) + " key");
    }
    out->keys_.push_back(Key{kid, alg, *key});
  }
  if (out->keys_.empty()) return rejected("JWKS has no usable RS256, ES256 or EdDSA key");
  return std::shared_ptr<const Jwks>(std::move(out));
}

pr::Result<CallerIdentity> JwtVerifier::verify(std::string_view token, const Jwks& jwks,
                                               std::int64_t now) {
  kid_unknown_ = false;
  if (token.size() > options_.max_token_bytes) return rejected("token too large");
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return rejected("token is not a compact JWS (header.payload.signature)");
  }
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view sig_b64 = token.substr(dot2 + 1);
  const auto header_json = pr::base64url_decode(header_b64);
  const auto payload_json = pr::base64url_decode(payload_b64);
  const auto signature = pr::base64url_decode(sig_b64);
  if (!header_json || !payload_json || !signature || signature->empty()) {
    return rejected("token is not valid base64url");
  }

  // Header: which key, which algorithm. Nothing in the payload is looked at before the
  // signature is proven.
  simdjson::dom::element header_doc;
  simdjson::dom::object header;
  if (parser_.parse(*header_json).get(header_doc) != simdjson::SUCCESS ||
      header_doc.get_object().get(header) != simdjson::SUCCESS) {
    return rejected("token header is not a JSON object");
  }
  std::vector<std::string_view> names;
  if (repeats_a_name(header_doc, names)) return rejected("token header repeats a member name");
  const auto alg_name = string_member(header, "alg");
  if (!alg_name) return rejected("token header has no alg");
  const auto alg = sig_alg(*alg_name);
  if (!alg) return rejected("token alg \"" + std::string(*alg_name) + "\" is not accepted");
  if (has_member(header, "crit")) return rejected("token header has unsupported crit extensions");
  const auto kid = string_member(header, "kid");
  if (has_member(header, "kid") && !kid) return rejected("token kid is not a string");
  const Jwks::Key* key = nullptr;
  std::size_t candidates = 0;
  for (const Jwks::Key& k : jwks.keys()) {
    if (k.key.alg() != *alg) continue;
    ++candidates;
    if (!kid || k.kid == *kid) {
      key = &k;
      if (kid) break;
    }
  }
  if (kid && key == nullptr) {
    kid_unknown_ = true;
    return rejected("no " + std::string(*alg_name) + " key with kid \"" + std::string(*kid) + "\"");
  }
  if (!kid && candidates != 1) {
    return rejected("token has no kid and the key set has " + std::to_string(candidates) + " " +
                    std::string(*alg_name) + " keys");
  }
  const std::string signed_part(token.substr(0, dot2));
  if (!key->key.verify(signed_part, *signature)) return rejected("bad token signature");

  simdjson::dom::element claims_doc;
  simdjson::dom::object claims;
  if (parser_.parse(*payload_json).get(claims_doc) != simdjson::SUCCESS ||
      claims_doc.get_object().get(claims) != simdjson::SUCCESS) {
    return rejected("token payload is not a JSON object");
  }
  if (repeats_a_name(claims_doc, names)) return rejected("token claims repeat a member name");
  const auto exp = number_member(claims, "exp");
  if (!exp) return rejected("token has no numeric exp");
  if (*exp + static_cast<double>(options_.clock_skew_s) <= static_cast<double>(now)) {
    return rejected("token expired");
  }
  if (has_member(claims, "nbf")) {
    const auto nbf = number_member(claims, "nbf");
    if (!nbf) return rejected("token nbf is not a number");
    if (*nbf - static_cast<double>(options_.clock_skew_s) > static_cast<double>(now)) {
      return rejected("token not valid yet (nbf)");
    }
  }
  if (has_member(claims, "iat")) {
    const auto iat = number_member(claims, "iat");
    if (!iat) return rejected("token iat is not a number");
    if (*iat - static_cast<double>(options_.clock_skew_s) > static_cast<double>(now)) {
      return rejected("token issued in the future (iat)");
    }
  }
  CallerIdentity out;
  // A NumericDate beyond year 9999 is no date (and would not fit the conversion).
  if (!(*exp < 253402300800.0)) return rejected("token exp is out of range");
  out.expires_at = static_cast<std::int64_t>(*exp);
  const auto iss = string_member(claims, "iss");
  if (!options_.issuers.empty() &&
      (!iss || std::find(options_.issuers.begin(), options_.issuers.end(), *iss) ==
                   options_.issuers.end())) {
    return rejected("token issuer \"" + std::string(iss.value_or("")) + "\" is not accepted");
  }
  out.issuer = std::string(iss.value_or(""));
  if (!options_.audiences.empty()) {
    bool matched = false;
    auto accept = [&](std::string_view a) {
      matched = matched || std::find(options_.audiences.begin(), options_.audiences.end(), a) !=
                               options_.audiences.end();
    };
    simdjson::dom::element aud;
    if (claims["aud"].get(aud) == simdjson::SUCCESS) {
      std::string_view one;
      simdjson::dom::array many;
      if (aud.get_string().get(one) == simdjson::SUCCESS) {
        accept(one);
      } else if (aud.get_array().get(many) == simdjson::SUCCESS) {
        for (simdjson::dom::element a : many) {
          if (a.get_string().get(one) == simdjson::SUCCESS) accept(one);
        }
      }
    }
    if (!matched) return rejected("token audience is not accepted");
  }
  auto ident = string_member(claims, options_.identity_claim);
  if (ident && !ident->empty() && options_.identity_claim == "email") {
    // An address the provider has not verified is anybody's to claim.
    simdjson::dom::element verified;
    if (claims["email_verified"].get(verified) == simdjson::SUCCESS) {
      bool yes = false;
      std::string_view text;  // some providers send "true" as a string
      if (verified.get_bool().get(yes) != simdjson::SUCCESS) {
        yes = verified.get_string().get(text) == simdjson::SUCCESS && text == "true";
      }
      if (!yes) return rejected("token email is not verified (email_verified is not true)");
    }
  }
  if (!ident || ident->empty()) ident = string_member(claims, options_.fallback_identity_claim);
  if (!ident || !printable(*ident, 256)) return rejected("token has no usable identity claim");
  out.identity = std::string(*ident);
  const auto sub = string_member(claims, "sub");
  out.principal = "oidc:" + out.issuer + "#" +
                  (sub && !sub->empty() ? std::string(*sub) : "identity:" + out.identity);
  // On behalf of: "act" names the agent, a nested "act" whoever that agent acts for, and so on.
  if (has_member(claims, "act")) {
    simdjson::dom::object act;
    if (claims["act"].get_object().get(act) != simdjson::SUCCESS) {
      return rejected("token act claim is not an object");
    }
    for (;;) {
      const auto actor = string_member(act, "sub");
      if (!actor || !printable(*actor, 256)) return rejected("token act claim has no usable sub");
      if (out.actors.size() >= JwtOptions::kMaxActors) {
        return rejected("token act chain is longer than " + std::to_string(JwtOptions::kMaxActors));
      }
      out.actors.emplace_back(*actor);
      if (!has_member(act, "act")) break;
      if (act["act"].get_object().get(act) != simdjson::SUCCESS) {
        return rejected("token act claim is not an object");
      }
    }
  }
  for (const std::string_view claim : {"azp", "client_id"}) {
    if (!has_member(claims, claim)) continue;
    const auto id = string_member(claims, claim);
    if (!id || !printable(*id, 256))
      return rejected("token " + std::string(claim) + " is not a name");
    if (out.client_id.empty()) out.client_id = std::string(*id);
  }
  simdjson::dom::element groups;
  if (claims[options_.groups_claim].get(groups) == simdjson::SUCCESS) {
    std::string_view one;
    simdjson::dom::array many;
    if (groups.get_string().get(one) == simdjson::SUCCESS) {
      if (!printable(one, 256)) return rejected("token group name is not usable");
      out.groups.emplace_back(one);
    } else if (groups.get_array().get(many) == simdjson::SUCCESS) {
      for (simdjson::dom::element g : many) {
        if (g.get_string().get(one) != simdjson::SUCCESS || !printable(one, 256) ||
            out.groups.size() >= 1024) {
          return rejected("token groups claim is not a list of names");
        }
        out.groups.emplace_back(one);
      }
    } else {
      return rejected("token groups claim is not a list of names");
    }
  }
  return out;
}

}  // namespace pgwarden::policy
