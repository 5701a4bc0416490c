#include "openrl/core/crypto.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstring>

#include "openrl/core/openssl_util.h"

namespace openrl::crypto {
namespace {

using internal::BioPtr;
using internal::MdCtxPtr;
using internal::OpenSslError;
using internal::PkeyPtr;
using internal::U8;

Status CheckLen(std::string_view what, std::string_view bytes, size_t want) {
  if (bytes.size() == want) return Status::Ok();
  return InvalidArgument(std::string(what) + " must be " + std::to_string(want) + " bytes, got " +
                         std::to_string(bytes.size()));
}

Result<PkeyPtr> PrivateKey(std::string_view private_key) {
  OPENRL_RETURN_IF_ERROR(CheckLen("Ed25519 private key", private_key, kEd25519PrivateKeySize));
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, U8(private_key), private_key.size()));
  if (!key) return InvalidArgument("Ed25519 private key rejected: " + OpenSslError());
  return key;
}

Result<PkeyPtr> PublicKey(std::string_view public_key) {
  OPENRL_RETURN_IF_ERROR(CheckLen("Ed25519 public key", public_key, kEd25519PublicKeySize));
  PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, U8(public_key), public_key.size()));
  if (!key) return InvalidArgument("Ed25519 public key rejected: " + OpenSslError());
  return key;
}

Result<std::string> RawKey(EVP_PKEY* key, bool is_private) {
  std::string out(32, '\0');
  size_t len = out.size();
  int ok = is_private ? EVP_PKEY_get_raw_private_key(key, reinterpret_cast<unsigned char*>(out.data()), &len)
                      : EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(out.data()), &len);
  if (ok != 1 || len != 32) return Internal("cannot extract raw Ed25519 key: " + OpenSslError());
  return out;
}

Result<std::string> BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len < 0) return Internal("cannot read PEM buffer");
  return std::string(data, static_cast<size_t>(len));
}

Result<PkeyPtr> ReadPem(std::string_view pem, bool is_private) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Internal("cannot allocate PEM buffer");
  PkeyPtr key(is_private ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                         : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  const char* kind = is_private ? "private" : "public";
  if (!key) return InvalidArgument(std::string("not a PEM ") + kind + " key: " + OpenSslError());
  if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519)
    return InvalidArgument(std::string("PEM ") + kind + " key is not Ed25519");
  return key;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int B64UrlValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

}  // namespace

struct Sha256Hasher::Impl {
  MdCtxPtr ctx{EVP_MD_CTX_new()};
  void Reset() { EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr); }
};

Sha256Hasher::Sha256Hasher() : impl_(std::make_unique<Impl>()) { impl_->Reset(); }
Sha256Hasher::~Sha256Hasher() = default;

void Sha256Hasher::Update(std::string_view data) { EVP_DigestUpdate(impl_->ctx.get(), data.data(), data.size()); }

std::string Sha256Hasher::Finish() {
  std::string out(kSha256Size, '\0');
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len);
  impl_->Reset();
  return out;
}

std::string Sha256Hasher::FinishHex() { return HexEncode(Finish()); }

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  // One-shot HMAC over in-memory data; cannot fail for SHA-256 with valid pointers.
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &n);
  return std::string(reinterpret_cast<const char*>(out), n);
}

std::string Sha256(std::string_view data) {
  Sha256Hasher h;
  h.Update(data);
  return h.Finish();
}

std::string Sha256Hex(std::string_view data) { return HexEncode(Sha256(data)); }

Result<std::string> Sha256FileHex(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return NotFound("cannot open " + path + ": " + std::strerror(errno));
  Sha256Hasher h;
  std::string buf(1 << 16, '\0');
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.Update(std::string_view(buf.data(), n));
  bool failed = std::ferror(f) != 0;
  int saved_errno = errno;
  std::fclose(f);
  if (failed) return Internal("error reading " + path + ": " + std::strerror(saved_errno));
  return h.FinishHex();
}

Result<Ed25519KeyPair> Ed25519Generate() {
  OPENRL_ASSIGN_OR_RETURN(std::string seed, RandomBytes(kEd25519PrivateKeySize));
  OPENRL_ASSIGN_OR_RETURN(std::string pub, Ed25519PublicFromPrivate(seed));
  return Ed25519KeyPair{std::move(seed), std::move(pub)};
}

Result<std::string> Ed25519PublicFromPrivate(std::string_view private_key) {
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr key, PrivateKey(private_key));
  return RawKey(key.get(), /*is_private=*/false);
}

Result<std::string> Ed25519Sign(std::string_view private_key, std::string_view message) {
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr key, PrivateKey(private_key));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  std::string sig(kEd25519SignatureSize, '\0');
  size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, U8(message),
                     message.size()) != 1 ||
      len != kEd25519SignatureSize)
    return Internal("Ed25519 signing failed: " + OpenSslError());
  return sig;
}

bool Ed25519Verify(std::string_view public_key, std::string_view message, std::string_view signature) {
  if (signature.size() != kEd25519SignatureSize) return false;
  Result<PkeyPtr> key = PublicKey(public_key);
  if (!key.ok()) return false;
  MdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key->get()) == 1 &&
            EVP_DigestVerify(ctx.get(), U8(signature), signature.size(), U8(message), message.size()) == 1;
  ERR_clear_error();
  return ok;
}

Result<std::string> Ed25519PrivateKeyToPem(std::string_view private_key) {
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr key, PrivateKey(private_key));
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return Internal("cannot write PEM private key: " + OpenSslError());
  return BioToString(bio.get());
}

Result<std::string> Ed25519PublicKeyToPem(std::string_view public_key) {
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr key, PublicKey(public_key));
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1)
    return Internal("cannot write PEM public key: " + OpenSslError());
  return BioToString(bio.get());
}

Result<std::string> Ed25519PrivateKeyFromPem(std::string_view pem) {
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr key, ReadPem(pem, /*is_private=*/true));
  return RawKey(key.get(), /*is_private=*/true);
}

Result<std::string> Ed25519PublicKeyFromPem(std::string_view pem) {
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr key, ReadPem(pem, /*is_private=*/false));
  return RawKey(key.get(), /*is_private=*/false);
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    return Internal("secure random generator failed: " + OpenSslError());
  return out;
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

Result<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return InvalidArgument("hex string has odd length " + std::to_string(hex.size()));
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = HexValue(hex[i]), lo = HexValue(hex[i + 1]);
    if (hi < 0 || lo < 0)
      return InvalidArgument("invalid hex character at offset " + std::to_string(hi < 0 ? i : i + 1));
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

std::string Base64UrlEncode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto u = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (u(i) << 16) | (u(i + 1) << 8) | u(i + 2);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kB64Url[(v >> s) & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest == 1) {
    uint32_t v = u(i) << 16;
    out.push_back(kB64Url[(v >> 18) & 63]);
    out.push_back(kB64Url[(v >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t v = (u(i) << 16) | (u(i + 1) << 8);
    out.push_back(kB64Url[(v >> 18) & 63]);
    out.push_back(kB64Url[(v >> 12) & 63]);
    out.push_back(kB64Url[(v >> 6) & 63]);
  }
  return out;
}

Result<std::string> Base64UrlDecode(std::string_view text) {
  size_t end = text.size();
  while (end > 0 && text[end - 1] == '=' && text.size() - end < 2) --end;
  if (end != text.size() && text.size() % 4 != 0)
    return InvalidArgument("base64url: padding does not complete a 4-character group");
  if (end % 4 == 1) return InvalidArgument("base64url: impossible length " + std::to_string(end));
  std::string out;
  out.reserve(end * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < end; ++i) {
    int v = B64UrlValue(text[i]);
    if (v < 0) return InvalidArgument("base64url: invalid character at offset " + std::to_string(i));
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0) return InvalidArgument("base64url: non-zero trailing bits");
  return out;
}

}  // namespace openrl::crypto
