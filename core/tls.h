// TLS termination for client connections with OpenSSL over memory BIOs: the session hands in
// encrypted bytes from its receive buffers and takes encrypted bytes out for its send queue, so
// the io_uring data path stays as it is. (Kernel TLS is not used: the hosts we test on have no
// "tls" ULP; this path is the default everywhere.)
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "protocol/framer.h"

struct ssl_ctx_st;
struct ssl_st;

namespace pgwarden::core {

// An immutable server context (certificate, key, TLS 1.2+), shared by all cores; replaced as a
// whole on SIGHUP.
class TlsContext {
 public:
  // Throws std::runtime_error naming the file and OpenSSL's reason.
  static std::shared_ptr<const TlsContext> load(const std::string& cert_file,
                                                const std::string& key_file);
  // For pgwarden's own connections to the upstream server; `verify` checks the server's chain
  // against `ca_file` (the system's CAs when empty).
  static std::shared_ptr<const TlsContext> client(bool verify, const std::string& ca_file);
  ~TlsContext();
  ssl_ctx_st* native() const noexcept { return ctx_; }

 private:
  explicit TlsContext(ssl_ctx_st* ctx) : ctx_(ctx) {}
  ssl_ctx_st* ctx_;
};

// The current context, swapped by the main thread on reload, read by cores for new sessions.
class TlsContextHolder {
 public:
  void set(std::shared_ptr<const TlsContext> ctx) { ctx_.store(std::move(ctx)); }
  std::shared_ptr<const TlsContext> get() const { return ctx_.load(); }

 private:
  std::atomic<std::shared_ptr<const TlsContext>> ctx_;
};

// Whether this kernel offers the "tls" upper-layer protocol (kernel TLS), probed once on a
// loopback connection. pgwarden reports it; TLS itself stays on the memory-BIO path.
bool kernel_tls_available();

// One client connection's TLS state. Owned by the session's core.
class TlsChannel {
 public:
  // Server side of a client connection.
  explicit TlsChannel(std::shared_ptr<const TlsContext> ctx);
  // Client side towards the upstream; a non-empty `verify_name` (host name or IP address) must
  // match the server's certificate.
  TlsChannel(std::shared_ptr<const TlsContext> ctx, const std::string& verify_name,
             const std::string& sni);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  enum class Status { Ok, Closed, Failed };
  // Takes encrypted bytes from the client; appends any decrypted application data to `plain`.
  Status on_encrypted(protocol::Bytes encrypted, std::basic_string<std::byte>& plain);
  // Encrypts `plain` (may be empty: flushes handshake output) and appends records to `out`.
  Status encrypt(protocol::Bytes plain, std::basic_string<std::byte>& out);
  bool handshake_done() const noexcept;
  // RFC 5929 tls-server-end-point: the hash of our certificate, with its signature's hash
  // (SHA-256 where that is MD5 or SHA-1). Empty when there is no certificate.
  std::string server_end_point() const;
  // "TLSv1.3 TLS_AES_256_GCM_SHA384", for the recording.
  std::string describe() const;
  // Client side: produces the ClientHello (collect it with encrypt({}, out)).
  Status start();
  const std::string& error() const noexcept { return error_; }

 private:
  Status drain(std::basic_string<std::byte>& out);
  std::shared_ptr<const TlsContext> ctx_;
  ssl_st* ssl_ = nullptr;
  std::string error_;
};

}  // namespace pgwarden::core
