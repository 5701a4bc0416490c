// age file encryption (age-encryption.org/v1, c2sp.org/age) to native X25519 recipients, on
// OpenSSL 3 EVP. The server encrypts exported weights to a client's "age1..." public key; the
// client decrypts with any age implementation (age, rage, pyrage). Encryption only: the server
// never holds a client's identity. Output is the binary format (not ASCII-armored).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "openrl/core/fs.h"
#include "openrl/core/status.h"

namespace openrl::crypto {

inline constexpr size_t kAgeX25519KeySize = 32;
inline constexpr size_t kAgeChunkSize = size_t{64} * 1024;  // STREAM plaintext chunk

// An age X25519 recipient, parsed from its Bech32 text "age1..." (all lower or all upper case).
struct AgeRecipient {
  std::string x25519_public_key;  // 32 raw bytes
};

// INVALID_ARGUMENT naming the problem: wrong HRP (also for SSH keys, age1pq and secret keys),
// bad Bech32 checksum or alphabet, mixed case, a key that is not 32 bytes. Never echoes the
// input, which might be a secret key pasted by mistake.
Result<AgeRecipient> ParseAgeRecipient(std::string_view text);

// Encrypts to every recipient (one X25519 stanza each; at least one). Each call draws a fresh
// file key and payload nonce, so encrypting the same input twice gives different output.
Result<std::string> AgeEncrypt(std::string_view plaintext, const std::vector<AgeRecipient>& recipients);

// Streams `plaintext_path` in 64 KiB chunks into a temporary file beside `out_path`, fsyncs it
// and renames it into place: on error `out_path` is untouched and no temporary file remains.
// Errors name the paths. `ops` is the seam tests use to inject write/rename faults.
Status AgeEncryptFile(const std::string& plaintext_path, const std::string& out_path,
                      const std::vector<AgeRecipient>& recipients, fs::FileOps& ops = fs::DefaultFileOps());

// An X25519 identity in age's text encodings (for tests and for clients without an age tool).
struct AgeIdentity {
  std::string secret_text;     // "AGE-SECRET-KEY-1..." (upper case, as age prints it)
  std::string recipient_text;  // "age1..."
};
Result<AgeIdentity> AgeGenerateIdentity();
// Deterministic: the identity for a 32-byte X25519 secret (lets tests check the spec's vector).
Result<AgeIdentity> AgeIdentityFromSecretKey(std::string_view secret_key);

}  // namespace openrl::crypto
