#include "core/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdexcept>

namespace pgwarden::core {
namespace {

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace

bool kernel_tls_available() {
  const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  bool ok = false;
  if (lfd >= 0 && ::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::listen(lfd, 1) == 0 && ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    const int cfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cfd >= 0 && ::connect(cfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      ok = ::setsockopt(cfd, SOL_TCP, TCP_ULP, "tls", 3) == 0;
    }
    if (cfd >= 0) ::close(cfd);
  }
  if (lfd >= 0) ::close(lfd);
  return ok;
}

std::shared_ptr<const TlsContext> TlsContext::load(const std::string& cert_file,
                                                   const std::string& key_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) throw std::runtime_error("TLS: " + openssl_error());
  auto fail = [&](const std::string& what) {
    const std::string why = openssl_error();
    SSL_CTX_free(ctx);
    throw std::runtime_error(what + ": " + why);
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // TLS 1.2: forward-secret AEAD suites only; TLS 1.3 suites are all acceptable.
  if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!SHA1") != 1) {
    fail("TLS cipher list");
  }
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) fail(cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) fail(key_file);
  if (SSL_CTX_check_private_key(ctx) != 1) fail(key_file + " does not match " + cert_file);
  return std::shared_ptr<const TlsContext>(new TlsContext(ctx));
}

std::shared_ptr<const TlsContext> TlsContext::client(bool verify, const std::string& ca_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) throw std::runtime_error("TLS: " + openssl_error());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (verify) {
    const int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                   : SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
    if (ok != 1) {
      const std::string why = openssl_error();
      SSL_CTX_free(ctx);
      throw std::runtime_error("--upstream-tls-ca " + ca_file + ": " + why);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return std::shared_ptr<const TlsContext>(new TlsContext(ctx));
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

TlsChannel::TlsChannel(std::shared_ptr<const TlsContext> ctx) : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->native());
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || in == nullptr || out == nullptr) std::abort();  // out of memory
  BIO_set_mem_eof_return(in, -1);  // an empty input BIO means "want more", not EOF
  SSL_set_bio(ssl_, in, out);
  SSL_set_accept_state(ssl_);
}

TlsChannel::TlsChannel(std::shared_ptr<const TlsContext> ctx, const std::string& verify_name,
                       const std::string& sni)
    : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->native());
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || in == nullptr || out == nullptr) std::abort();  // out of memory
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(ssl_, in, out);
  SSL_set_connect_state(ssl_);
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl_, sni.c_str());
  if (!verify_name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    // An address is checked against IP SANs, anything else against DNS names.
    if (X509_VERIFY_PARAM_set1_ip_asc(param, verify_name.c_str()) != 1) {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, verify_name.c_str(), 0);
    }
  }
}

TlsChannel::~TlsChannel() {
  SSL_free(ssl_);
}

TlsChannel::Status TlsChannel::start() {
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return Status::Ok;
  const int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Status::Ok;
  error_ = "TLS: " + openssl_error();
  return Status::Failed;
}

std::string TlsChannel::describe() const {
  return std::string(SSL_get_version(ssl_)) + " " + SSL_get_cipher_name(ssl_);
}

std::string TlsChannel::server_end_point() const {
  X509* cert = SSL_get_certificate(ssl_);
  if (cert == nullptr) return {};
  int md_nid = NID_undef;
  if (OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, nullptr) != 1) return {};
  const EVP_MD* md =
      (md_nid == NID_md5 || md_nid == NID_sha1) ? EVP_sha256() : EVP_get_digestbynid(md_nid);
  if (md == nullptr) return {};
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, md, digest, &len) != 1) return {};
  return std::string(reinterpret_cast<char*>(digest), len);
}

bool TlsChannel::handshake_done() const noexcept {
  return SSL_is_init_finished(ssl_) == 1;
}

TlsChannel::Status TlsChannel::on_encrypted(protocol::Bytes encrypted,
                                            std::basic_string<std::byte>& plain) {
  if (!encrypted.empty() &&
      BIO_write(SSL_get_rbio(ssl_), encrypted.data(), static_cast<int>(encrypted.size())) <= 0) {
    error_ = "TLS: cannot buffer input";
    return Status::Failed;
  }
  std::byte buf[16384];
  for (;;) {
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      plain.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Status::Ok;
    if (err == SSL_ERROR_ZERO_RETURN) return Status::Closed;
    error_ = "TLS: " + openssl_error();
    return Status::Failed;
  }
}

TlsChannel::Status TlsChannel::encrypt(protocol::Bytes plain, std::basic_string<std::byte>& out) {
  std::size_t done = 0;
  while (done < plain.size()) {
    const int n = SSL_write(ssl_, plain.data() + done, static_cast<int>(plain.size() - done));
    if (n <= 0) {
      const int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ && !handshake_done()) break;  // sent after the handshake
      error_ = "TLS: " + openssl_error();
      return Status::Failed;
    }
    done += static_cast<std::size_t>(n);
  }
  if (done < plain.size()) {
    error_ = "TLS: data to send before the handshake finished";
    return Status::Failed;
  }
  return drain(out);
}

TlsChannel::Status TlsChannel::drain(std::basic_string<std::byte>& out) {
  BIO* wbio = SSL_get_wbio(ssl_);
  std::byte buf[16384];
  int n;
  while ((n = BIO_read(wbio, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return Status::Ok;
}

}  // namespace pgwarden::core
