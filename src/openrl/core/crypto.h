// Cryptography on OpenSSL 3 (EVP): SHA-256 (bytes, streaming, files), HMAC-SHA256, Ed25519 keys/signatures
// (raw 32-byte keys and PEM), constant-time comparison, secure random bytes, hex and base64url.
// Byte strings are carried in std::string (any byte values); keys are raw bytes unless the
// function name says PEM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "openrl/core/status.h"

namespace openrl::crypto {

inline constexpr size_t kSha256Size = 32;
inline constexpr size_t kEd25519PrivateKeySize = 32;  // the RFC 8032 seed
inline constexpr size_t kEd25519PublicKeySize = 32;
inline constexpr size_t kEd25519SignatureSize = 64;

// SHA-256 digest: 32 raw bytes, or 64 lowercase hex characters.
std::string Sha256(std::string_view data);
std::string Sha256Hex(std::string_view data);
// Streams the file in chunks; errors name the path.
Result<std::string> Sha256FileHex(const std::string& path);

// Incremental SHA-256 for data that arrives in pieces.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  void Update(std::string_view data);
  // Returns the digest and resets the hasher for reuse.
  std::string Finish();
  std::string FinishHex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// HMAC-SHA256 (RFC 2104): 32 raw bytes.
std::string HmacSha256(std::string_view key, std::string_view data);

struct Ed25519KeyPair {
  std::string private_key;  // 32-byte seed
  std::string public_key;   // 32 bytes
};

Result<Ed25519KeyPair> Ed25519Generate();
Result<std::string> Ed25519PublicFromPrivate(std::string_view private_key);
// Returns the 64-byte signature; the key must be 32 bytes.
Result<std::string> Ed25519Sign(std::string_view private_key, std::string_view message);
// False for a bad signature and also for a malformed key or signature length.
bool Ed25519Verify(std::string_view public_key, std::string_view message, std::string_view signature);

// PEM ("-----BEGIN PRIVATE KEY-----" PKCS#8 / "-----BEGIN PUBLIC KEY-----" SPKI).
Result<std::string> Ed25519PrivateKeyToPem(std::string_view private_key);
Result<std::string> Ed25519PublicKeyToPem(std::string_view public_key);
Result<std::string> Ed25519PrivateKeyFromPem(std::string_view pem);
Result<std::string> Ed25519PublicKeyFromPem(std::string_view pem);

// Compares in time that depends only on the lengths (for tokens, MACs, key hashes).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// Cryptographically secure random bytes.
Result<std::string> RandomBytes(size_t n);

std::string HexEncode(std::string_view bytes);
Result<std::string> HexDecode(std::string_view hex);  // either case
// RFC 4648 §5 alphabet, no padding.
std::string Base64UrlEncode(std::string_view bytes);
// Accepts input with or without '=' padding; rejects other alphabets and stray characters.
Result<std::string> Base64UrlDecode(std::string_view text);

}  // namespace openrl::crypto
