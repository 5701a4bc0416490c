// age primitives shared by age.cc (X25519 stanzas, the payload) and age_ssh.cc (SSH recipients);
// core-internal, not for other modules.
#pragma once

#include <openssl/evp.h>

#include <string>
#include <string_view>

#include "openrl/core/age.h"
#include "openrl/core/openssl_util.h"
#include "openrl/core/status.h"

namespace openrl::crypto::age_internal {

inline constexpr size_t kFileKeySize = 16;

Status BadRecipient(const std::string& why);
// Standard alphabet, no '=' padding (the age header's encoding; crypto.h only has base64url).
std::string Base64NoPad(std::string_view bytes);
// HKDF-SHA256 with a 32-byte output; an empty `salt` is RFC 5869's absent salt.
Result<std::string> HkdfSha256(std::string_view ikm, std::string_view salt, std::string_view info);
// ChaCha20-Poly1305 under `key` with `nonce`, no associated data; ciphertext || 16-byte tag.
Result<std::string> Seal(EVP_CIPHER_CTX* ctx, std::string_view key, std::string_view nonce,
                         std::string_view plaintext);
// The file key sealed under `wrap_key` with the all-zero nonce, as every age stanza body is.
Result<std::string> SealFileKey(std::string_view wrap_key, std::string_view file_key);
Result<internal::PkeyPtr> X25519PrivateKey(std::string_view secret);
Result<std::string> X25519PublicKey(EVP_PKEY* key);
// INVALID_ARGUMENT when the result is all zero (a low-order peer point).
Result<std::string> X25519SharedSecret(EVP_PKEY* secret, std::string_view peer_public);
// "-> <args>\n" then the body's base64 wrapped at 64 columns, always ending with a line shorter
// than 64 (empty when the length is a multiple of 64), as the header grammar requires.
std::string StanzaText(std::string_view args, std::string_view body);

// age_ssh.cc: an "ssh-..." recipient text, and the stanzas of the two SSH kinds.
Result<AgeRecipient> ParseSshRecipient(std::string_view text);
Result<std::string> SshEd25519Stanza(std::string_view file_key, const AgeRecipient& recipient);
Result<std::string> SshRsaStanza(std::string_view file_key, const AgeRecipient& recipient);

}  // namespace openrl::crypto::age_internal
