// age file encryption (age-encryption.org/v1, c2sp.org/age) on OpenSSL 3 EVP, to native X25519
// recipients ("age1...") and to SSH public keys ("ssh-ed25519 ...", "ssh-rsa ..."), which the
// tinker SDK documents for exports. The server encrypts exported weights to a client's public
// key; the client decrypts with any age implementation (age, rage, pyrage) and its identity or
// SSH private key. Encryption only: the server never holds a client's secret. Output is the
// binary format (not ASCII-armored).
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

inline constexpr int kAgeMinRsaBits = 2048;  // smaller ssh-rsa keys are refused
inline constexpr int kAgeMaxRsaBits = 16384;

// A recipient: an X25519 key parsed from its Bech32 text "age1..." (all lower or all upper
// case), or an SSH public key in authorized_keys form "ssh-ed25519 AAAA... [comment]" /
// "ssh-rsa AAAA... [comment]" (age's ssh-ed25519 and ssh-rsa stanzas).
struct AgeRecipient {
  enum class Kind { kX25519, kSshEd25519, kSshRsa };
  Kind kind = Kind::kX25519;
  // kX25519: the key. kSshEd25519: the Ed25519 key mapped to its X25519 (Montgomery) form.
  std::string x25519_public_key;  // 32 raw bytes
  std::string ssh_key;            // the SSH wire encoding of the public key (ssh kinds)
  std::string rsa_n, rsa_e;       // kSshRsa: modulus and exponent, big-endian, no leading zeros
};

// INVALID_ARGUMENT naming the problem: wrong HRP (also for age1pq and secret keys), bad Bech32
// checksum or alphabet, mixed case, a key that is not 32 bytes; for SSH keys an unsupported type
// (ecdsa, dss, security keys, certificates), bad base64, a blob that is truncated, has trailing
// bytes or names another type than its text, an Ed25519 key that is not 32 bytes or not a point
// with an X25519 form, an RSA key outside 2048–16384 bits. Never echoes the input, which might
// be a secret key pasted by mistake.
Result<AgeRecipient> ParseAgeRecipient(std::string_view text);

// Encrypts to every recipient (one stanza each; at least one). Each call draws a fresh file key
// and payload nonce, so encrypting the same input twice gives different output.
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
