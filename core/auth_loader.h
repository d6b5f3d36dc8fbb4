// Loads the gateway-authentication configuration at start-up: policy role mappings, the upstream
// secrets (refused unless only the owner can read them), the JWKS and the static users file.
#pragma once

#include <memory>

#include "core/address.h"
#include "core/flags.h"
#include "policy/client_auth.h"
#include "policy/rules.h"

namespace pgwarden::core {

bool is_loopback(const Address& a);
// Tokens may come without TLS: a loopback listener and --allow-plaintext-auth.
bool plaintext_tokens_ok(const Config& config, const Address& listen);

// The statement rules of --policy FILE. Throws with file, JSON path and reason.
std::shared_ptr<const policy::Policy> load_policy(const std::string& file);

// A key file (mode 0600, at least 32 bytes, a trailing newline dropped): --record-key-file,
// --mask-key-file. Throws naming the file and what the key is for.
std::string load_key(const std::string& file, const char* what);

// The identity provider's keys (--jwks-file now; --jwks-url: empty until fetched), or null when
// neither is configured. Throws naming the file.
std::shared_ptr<policy::JwksSource> load_jwks(const Config& config);

// Throws std::runtime_error with the file and the reason. Never prints a secret.
std::shared_ptr<const policy::AuthConfig> load_auth_config(const Config& config,
                                                           const Address& listen);

}  // namespace pgwarden::core
