#include "core/auth_loader.h"

#include "policy/internal_login.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace pgwarden::core {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A file only its owner may read: refused otherwise, naming what it holds.
std::string read_private_file(const std::string& path, const char* holds) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot read " + path);
  if ((st.st_mode & 077) != 0) {
    throw std::runtime_error(path + ": readable by others; chmod 600 it (it holds " + holds + ")");
  }
  return read_file(path);
}

}  // namespace

std::shared_ptr<const policy::Policy> load_policy(const std::string& file) {
  auto p = policy::Policy::parse(read_file(file), file);
  if (!p) throw std::runtime_error(p.error().message);
  return *p;
}

std::string load_key(const std::string& file, const char* what) {
  std::string key = read_private_file(file, what);
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (key.size() < 32) {
    throw std::runtime_error(file +
                             ": the key must have at least 32 bytes (e.g. openssl rand -hex 32)");
  }
  return key;
}

bool is_loopback(const Address& a) {
  if (a.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (a.family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
  }
  return false;
}

bool plaintext_tokens_ok(const Config& config, const Address& listen) {
  return config.allow_plaintext_auth && is_loopback(listen);
}

std::shared_ptr<policy::JwksSource> load_jwks(const Config& config) {
  if (!config.oidc()) return nullptr;
  auto source = std::make_shared<policy::JwksSource>();  // --jwks-url: filled by JwksFetcher
  if (!config.jwks_file.empty()) {
    auto jwks = policy::Jwks::parse(read_file(config.jwks_file));
    if (!jwks) throw std::runtime_error(config.jwks_file + ": " + jwks.error().message);
    source->set(*jwks);
  }
  return source;
}

std::shared_ptr<const policy::AuthConfig> load_auth_config(const Config& config,
                                                           const Address& listen) {
  auto cfg = std::make_shared<policy::AuthConfig>();
  auto roles = policy::parse_role_mappings(read_file(config.policy_file));
  if (!roles) throw std::runtime_error(config.policy_file + ": " + roles.error().message);
  cfg->roles = *roles;

  // Secrets come from a file only its owner can read, or from an environment variable
  // ("env:NAME"), which is removed once read so no child process inherits it.
  std::string secrets_text;
  const std::string& source = config.upstream_secrets_file;
  if (source.rfind("env:", 0) == 0) {
    const std::string var = source.substr(4);
    const char* value = std::getenv(var.c_str());
    if (value == nullptr || *value == '\0') {
      throw std::runtime_error("--upstream-secrets: environment variable " + var + " is not set");
    }
    secrets_text = value;
    // Wipe the bytes in place too: /proc/PID/environ shows the original block, not environ[].
    explicit_bzero(const_cast<char*>(value), secrets_text.size());
    ::unsetenv(var.c_str());
  } else {
    secrets_text = read_private_file(source, "database passwords");
  }
  auto secrets = policy::parse_secrets(secrets_text);
  if (!secrets)
    throw std::runtime_error(config.upstream_secrets_file + ": " + secrets.error().message);
  cfg->upstream_passwords = *secrets;
  for (const auto& m : cfg->roles) {
    if (cfg->upstream_passwords.find(m.role) == cfg->upstream_passwords.end()) {
      throw std::runtime_error(config.policy_file + ": role \"" + m.role +
                               "\" has no credential in " + config.upstream_secrets_file);
    }
  }

  if (!config.jwks_file.empty() || !config.jwks_url.empty()) {
    cfg->jwks = load_jwks(config);
    // Tokens arrive as a cleartext password: over TLS, or on loopback when explicitly allowed.
    if (config.tls_cert_file.empty() && !plaintext_tokens_ok(config, listen)) {
      throw std::runtime_error(
          "OIDC tokens are sent as cleartext passwords: configure --tls-cert/--tls-key, or use a "
          "loopback --listen with --allow-plaintext-auth");
    }
  }
  cfg->jwt.issuers = config.oidc_issuers;
  cfg->jwt.audiences = config.oidc_audiences;
  cfg->jwt.identity_claim = config.identity_claim;
  cfg->jwt.groups_claim = config.groups_claim;
  cfg->jwt.clock_skew_s = static_cast<std::int64_t>(config.clock_skew_s);

  if (!config.mcp_url.empty()) cfg->internal = std::make_shared<policy::InternalLogins>();
  if (!config.users_file.empty()) {
    auto users = policy::parse_users_file(read_file(config.users_file));
    if (!users) throw std::runtime_error(config.users_file + ": " + users.error().message);
    cfg->users = *users;
  }
  return cfg;
}

}  // namespace pgwarden::core
