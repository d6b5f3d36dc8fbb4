#include "protocol/crypto.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

#include <array>

namespace pgwarden::protocol {
namespace {

constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<std::int8_t, 256> make_decode_table() {
  std::array<std::int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i)
    t[static_cast<unsigned char>(kB64Url[i])] = static_cast<std::int8_t>(i);
  return t;
}
constexpr auto kDecode = make_decode_table();

struct PkeyFree {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

std::array<unsigned char, 32> hmac_sha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  return out;
}

std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    const std::int8_t v = kDecode[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero: one canonical encoding per byte string.
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string base64url_encode(std::string_view in) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    acc = (acc << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kB64Url[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kB64Url[(acc << (6 - bits)) & 63]);
  return out;
}

struct PublicKey::Impl {
  PkeyPtr key;
};

std::optional<PublicKey> PublicKey::rsa(std::string_view n, std::string_view e) {
  if (n.size() < 256 || n.size() > 1024 || e.empty() || e.size() > 8) return std::nullopt;
  if (static_cast<unsigned char>(n[0]) == 0) return std::nullopt;  // not minimal: lies about size
  // e must be odd and above 1 (e = 1 would make any "signature" verify).
  if ((static_cast<unsigned char>(e.back()) & 1) == 0 ||
      (e.find_first_not_of('\0') == e.size() - 1 && static_cast<unsigned char>(e.back()) == 1)) {
    return std::nullopt;
  }
  BIGNUM* bn_n = BN_bin2bn(bytes(n), static_cast<int>(n.size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(bytes(e), static_cast<int>(e.size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY* pkey = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  if (bn_n != nullptr && bn_e != nullptr && bld != nullptr && ctx != nullptr &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1 &&
      (params = OSSL_PARAM_BLD_to_param(bld)) != nullptr && EVP_PKEY_fromdata_init(ctx) == 1) {
    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  }
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  if (pkey == nullptr) return std::nullopt;
  return PublicKey(SigAlg::RS256, std::make_shared<Impl>(Impl{PkeyPtr(pkey)}));
}

std::optional<PublicKey> PublicKey::p256(std::string_view x, std::string_view y) {
  if (x.size() != 32 || y.size() != 32) return std::nullopt;
  std::string point = "\x04";
  point.append(x);
  point.append(y);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>("P-256"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end(),
  };
  EVP_PKEY* pkey = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  if (ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1) {
    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  }
  EVP_PKEY_CTX_free(ctx);
  if (pkey == nullptr) return std::nullopt;
  PkeyPtr owned(pkey);
  // fromdata does not prove the point is on the curve; an invalid point must not be usable.
  EVP_PKEY_CTX* check = EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr);
  const bool valid = check != nullptr && EVP_PKEY_public_check(check) == 1;
  EVP_PKEY_CTX_free(check);
  if (!valid) return std::nullopt;
  return PublicKey(SigAlg::ES256, std::make_shared<Impl>(Impl{std::move(owned)}));
}

std::optional<PublicKey> PublicKey::ed25519(std::string_view x) {
  if (x.size() != 32) return std::nullopt;
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, bytes(x), x.size());
  if (pkey == nullptr) return std::nullopt;
  return PublicKey(SigAlg::EdDSA, std::make_shared<Impl>(Impl{PkeyPtr(pkey)}));
}

bool PublicKey::verify(std::string_view data, std::string_view sig) const {
  std::string der;
  std::string_view to_check = sig;
  if (alg_ == SigAlg::ES256) {
    // JWS carries r||s; libcrypto wants a DER ECDSA-Sig-Value.
    if (sig.size() != 64) return false;
    ECDSA_SIG* es = ECDSA_SIG_new();
    BIGNUM* r = BN_bin2bn(bytes(sig), 32, nullptr);
    BIGNUM* s = BN_bin2bn(bytes(sig) + 32, 32, nullptr);
    if (es == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(es, r, s) != 1) {
      BN_free(r);
      BN_free(s);
      ECDSA_SIG_free(es);
      return false;
    }
    unsigned char* out = nullptr;
    const int len = i2d_ECDSA_SIG(es, &out);
    ECDSA_SIG_free(es);
    if (len <= 0) return false;
    der.assign(reinterpret_cast<char*>(out), static_cast<std::size_t>(len));
    OPENSSL_free(out);
    to_check = der;
  }
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  if (md == nullptr) return false;
  const EVP_MD* digest = alg_ == SigAlg::EdDSA ? nullptr : EVP_sha256();
  bool ok = EVP_DigestVerifyInit(md, nullptr, digest, nullptr, impl_->key.get()) == 1 &&
            EVP_DigestVerify(md, bytes(to_check), to_check.size(), bytes(data), data.size()) == 1;
  EVP_MD_CTX_free(md);
  return ok;
}

}  // namespace pgwarden::protocol
