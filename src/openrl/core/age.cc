#include "openrl/core/age.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>

#include "openrl/core/age_internal.h"
#include "openrl/core/crypto.h"
#include "openrl/core/openssl_util.h"

namespace openrl::crypto {

using internal::CipherCtxPtr;
using internal::KdfCtxPtr;
using internal::OpenSslError;
using internal::PkeyCtxPtr;
using internal::PkeyPtr;
using internal::U8;

namespace {

constexpr std::string_view kVersionLine = "age-encryption.org/v1\n";
constexpr std::string_view kX25519Info = "age-encryption.org/v1/X25519";
constexpr std::string_view kRecipientHrp = "age";
constexpr std::string_view kSecretHrp = "age-secret-key-";
using age_internal::kFileKeySize;
constexpr size_t kPayloadNonceSize = 16;
constexpr size_t kTagSize = 16;

using age_internal::BadRecipient;
using age_internal::Base64NoPad;
using age_internal::HkdfSha256;
using age_internal::Seal;
using age_internal::X25519PrivateKey;
using age_internal::X25519PublicKey;
using age_internal::X25519SharedSecret;

// ---- Bech32 (BIP 173, without its 90-character limit, as the age spec says) ----

constexpr std::string_view kBech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

uint32_t Bech32Polymod(const std::vector<uint8_t>& values) {
  static constexpr uint32_t kGen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
  uint32_t chk = 1;
  for (uint8_t v : values) {
    uint32_t top = chk >> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (int i = 0; i < 5; ++i) {
      if ((top >> i) & 1) chk ^= kGen[i];
    }
  }
  return chk;
}

// The checksum covers the lowercase HRP: high bits of each character, a zero, then low bits.
std::vector<uint8_t> Bech32HrpExpand(std::string_view hrp) {
  std::vector<uint8_t> out;
  for (char c : hrp) out.push_back(static_cast<uint8_t>(c) >> 5);
  out.push_back(0);
  for (char c : hrp) out.push_back(static_cast<uint8_t>(c) & 31);
  return out;
}

// `hrp` must be lowercase; the result is lowercase.
std::string Bech32Encode(std::string_view hrp, std::string_view data) {
  std::vector<uint8_t> words;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : data) {
    acc = ((acc << 8) | b) & 0xfff;
    for (bits += 8; bits >= 5; bits -= 5) words.push_back((acc >> (bits - 5)) & 31);
  }
  if (bits > 0) words.push_back((acc << (5 - bits)) & 31);
  std::vector<uint8_t> values = Bech32HrpExpand(hrp);
  values.insert(values.end(), words.begin(), words.end());
  values.insert(values.end(), 6, 0);
  uint32_t checksum = Bech32Polymod(values) ^ 1;
  std::string out(hrp);
  out += '1';
  for (uint8_t w : words) out += kBech32Charset[w];
  for (int i = 0; i < 6; ++i) out += kBech32Charset[(checksum >> (5 * (5 - i))) & 31];
  return out;
}

// Explains a human-readable part that is not "age", naming the common mix-ups.
Status WrongHrp(std::string_view hrp) {
  if (hrp == "age1pq")
    return BadRecipient(
        "post-quantum age1pq recipients are not supported; only X25519 age1... recipients are");
  if (hrp == kSecretHrp)
    return BadRecipient(
        "this is a secret key (AGE-SECRET-KEY-1...), not a recipient; pass the age1... public key");
  // A long "HRP" is more likely pasted key material than a name, so only short ones are quoted.
  std::string shown = hrp.size() <= 10 ? "'" + std::string(hrp) + "'" : "not 'age'";
  return BadRecipient("HRP is " + shown + ", want 'age' (a recipient starts with age1)");
}

Result<AgeRecipient> DecodeRecipient(std::string_view text) {
  bool has_lower = false, has_upper = false;
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 33 || c > 126)
      return BadRecipient("whitespace or a non-printable character at position " + std::to_string(i));
    has_lower |= std::islower(c) != 0;
    has_upper |= std::isupper(c) != 0;
  }
  if (has_lower && has_upper)
    return BadRecipient("mixes upper and lower case (Bech32 text must be all one case)");
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t sep = lower.rfind('1');
  if (sep == std::string::npos || sep == 0)
    return BadRecipient("not Bech32: no '1' after the HRP (want age1...)");
  std::string_view hrp = std::string_view(lower).substr(0, sep);
  if (hrp != kRecipientHrp) return WrongHrp(hrp);
  if (lower.size() - sep - 1 < 6) return BadRecipient("too short to hold a Bech32 checksum");
  std::vector<uint8_t> values = Bech32HrpExpand(hrp);
  for (size_t i = sep + 1; i < lower.size(); ++i) {
    size_t v = kBech32Charset.find(lower[i]);
    if (v == std::string_view::npos)
      return BadRecipient("character at position " + std::to_string(i) + " is outside the Bech32 alphabet");
    values.push_back(static_cast<uint8_t>(v));
  }
  if (Bech32Polymod(values) != 1) return BadRecipient("bad Bech32 checksum (a typo or a truncated key?)");
  std::string key;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = hrp.size() * 2 + 1; i + 6 < values.size(); ++i) {
    acc = ((acc << 5) | values[i]) & 0xfff;
    for (bits += 5; bits >= 8; bits -= 8) key += static_cast<char>((acc >> (bits - 8)) & 0xff);
  }
  if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0) return BadRecipient("invalid Bech32 padding");
  if (key.size() != kAgeX25519KeySize) {
    return BadRecipient("bad length: the key is " + std::to_string(key.size()) + " bytes, want 32");
  }
  AgeRecipient r;
  r.x25519_public_key = std::move(key);
  return r;
}

// ---- header and payload ----

// "-> X25519 <share>\n<body>\n".
Result<std::string> X25519Stanza(std::string_view file_key, std::string_view recipient) {
  if (recipient.size() != kAgeX25519KeySize) return InvalidArgument("X25519 public key must be 32 bytes");
  OPENRL_ASSIGN_OR_RETURN(std::string ephemeral_secret, RandomBytes(kAgeX25519KeySize));
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr ephemeral, X25519PrivateKey(ephemeral_secret));
  OPENRL_ASSIGN_OR_RETURN(std::string share, X25519PublicKey(ephemeral.get()));
  OPENRL_ASSIGN_OR_RETURN(std::string shared, X25519SharedSecret(ephemeral.get(), recipient));
  OPENRL_ASSIGN_OR_RETURN(std::string wrap_key,
                          HkdfSha256(shared, share + std::string(recipient), kX25519Info));
  OPENRL_ASSIGN_OR_RETURN(std::string body, age_internal::SealFileKey(wrap_key, file_key));
  return age_internal::StanzaText("X25519 " + Base64NoPad(share), body);
}

Result<std::string> Header(std::string_view file_key, const std::vector<AgeRecipient>& recipients) {
  std::string header(kVersionLine);
  for (size_t i = 0; i < recipients.size(); ++i) {
    const AgeRecipient& r = recipients[i];
    Result<std::string> stanza =
        r.kind == AgeRecipient::Kind::kSshEd25519 ? age_internal::SshEd25519Stanza(file_key, r)
        : r.kind == AgeRecipient::Kind::kSshRsa   ? age_internal::SshRsaStanza(file_key, r)
                                                  : X25519Stanza(file_key, r.x25519_public_key);
    if (!stanza.ok()) return stanza.status().WithContext("age recipient #" + std::to_string(i + 1));
    header += *stanza;
  }
  header += "---";  // the MAC covers the header up to here
  OPENRL_ASSIGN_OR_RETURN(std::string mac_key, HkdfSha256(file_key, "", "header"));
  return header + " " + Base64NoPad(HmacSha256(mac_key, header)) + "\n";
}

// Returns the next piece of plaintext: exactly kAgeChunkSize bytes unless the input ends.
using ChunkReader = std::function<Result<std::string>()>;
using ByteSink = std::function<Status(std::string_view)>;

// The STREAM construction: chunk i is sealed with nonce = 11-byte big-endian i || last flag.
// The last chunk is known by reading one chunk ahead, so a multiple of 64 KiB ends with a full
// final chunk and an empty input is a single empty final chunk. Keys are not wiped afterwards:
// the process holds the plaintext they protect anyway.
Status EncryptStream(const std::vector<AgeRecipient>& recipients, const ChunkReader& read,
                     const ByteSink& write) {
  if (recipients.empty()) return InvalidArgument("age: at least one recipient is required");
  OPENRL_ASSIGN_OR_RETURN(std::string file_key, RandomBytes(kFileKeySize));
  OPENRL_ASSIGN_OR_RETURN(std::string header, Header(file_key, recipients));
  OPENRL_ASSIGN_OR_RETURN(std::string nonce, RandomBytes(kPayloadNonceSize));
  OPENRL_ASSIGN_OR_RETURN(std::string payload_key, HkdfSha256(file_key, nonce, "payload"));
  OPENRL_RETURN_IF_ERROR(write(header + nonce));
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return Internal("cipher context: " + OpenSslError());
  OPENRL_ASSIGN_OR_RETURN(std::string chunk, read());
  for (uint64_t counter = 0;; ++counter) {
    std::string next;
    if (chunk.size() == kAgeChunkSize) {
      OPENRL_ASSIGN_OR_RETURN(next, read());
    }
    const bool last = next.empty();
    std::string chunk_nonce(12, '\0');
    for (int i = 0; i < 8; ++i) chunk_nonce[10 - i] = static_cast<char>((counter >> (8 * i)) & 0xff);
    chunk_nonce[11] = last ? '\x01' : '\x00';
    OPENRL_ASSIGN_OR_RETURN(std::string sealed, Seal(ctx.get(), payload_key, chunk_nonce, chunk));
    OPENRL_RETURN_IF_ERROR(write(sealed));
    if (last) return Status::Ok();
    chunk = std::move(next);
  }
}

// ---- files ----

// Same errno → code mapping as fs::WriteFileAtomic, whose helpers are private to fs.cc.
Status ErrnoStatus(const std::string& step, const std::string& path, int err) {
  std::string msg = step + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
      return NotFound(std::move(msg));
    case EACCES:
    case EPERM:
      return PermissionDenied(std::move(msg));
    case ENOSPC:
    case EDQUOT:
      return ResourceExhausted(std::move(msg));
    default:
      return Internal(std::move(msg));
  }
}

Result<std::string> ReadChunk(int fd, const std::string& path) {
  std::string out(kAgeChunkSize, '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read", path, errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

Status WriteAll(fs::FileOps& ops, int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ops.Write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus("write", path, n < 0 ? errno : EIO);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Encrypts the open plaintext `in` into a new temporary file and renames it to `out_path`.
Status EncryptToTemp(int in, const std::string& plaintext_path, const std::string& out_path,
                     const std::vector<AgeRecipient>& recipients, fs::FileOps& ops) {
  OPENRL_ASSIGN_OR_RETURN(std::string rnd, RandomBytes(6));
  const std::string tmp = out_path + ".tmp-" + HexEncode(rnd);
  int out = ops.Open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) return ErrnoStatus("create", tmp, errno);
  Status st = EncryptStream(
      recipients, [&] { return ReadChunk(in, plaintext_path); },
      [&](std::string_view bytes) { return WriteAll(ops, out, bytes, tmp); });
  if (st.ok() && ops.Fsync(out) != 0) st = ErrnoStatus("fsync", tmp, errno);
  if (ops.Close(out) != 0 && st.ok()) st = ErrnoStatus("close", tmp, errno);
  if (st.ok() && ops.Rename(tmp.c_str(), out_path.c_str()) != 0)
    st = ErrnoStatus("rename " + tmp + " to", out_path, errno);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  // The rename is durable once the directory is synced, as fs::WriteFileAtomic does it.
  std::string dir = std::filesystem::path(out_path).parent_path().string();
  return fs::SyncDirectory(dir.empty() ? "." : dir);
}

}  // namespace

Result<AgeRecipient> ParseAgeRecipient(std::string_view text) {
  if (text.empty()) return BadRecipient("empty (want age1...)");
  if (text.substr(0, 4) == "ssh-" || text.substr(0, 6) == "ecdsa-" || text.substr(0, 7) == "sk-ssh-" ||
      text.substr(0, 7) == "sk-ecds")
    return age_internal::ParseSshRecipient(text);
  return DecodeRecipient(text);
}

Result<std::string> AgeEncrypt(std::string_view plaintext, const std::vector<AgeRecipient>& recipients) {
  std::string out;
  size_t pos = 0;
  Status st = EncryptStream(
      recipients,
      [&]() -> Result<std::string> {
        std::string piece(plaintext.substr(pos, kAgeChunkSize));
        pos += piece.size();
        return piece;
      },
      [&](std::string_view bytes) {
        out.append(bytes);
        return Status::Ok();
      });
  if (!st.ok()) return st;
  return out;
}

Status AgeEncryptFile(const std::string& plaintext_path, const std::string& out_path,
                      const std::vector<AgeRecipient>& recipients, fs::FileOps& ops) {
  const std::string context = "age-encrypt " + plaintext_path + " to " + out_path;
  if (recipients.empty()) return InvalidArgument("at least one recipient is required").WithContext(context);
  int in = ::open(plaintext_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return ErrnoStatus("open", plaintext_path, errno).WithContext(context);
  Status st = EncryptToTemp(in, plaintext_path, out_path, recipients, ops);
  ::close(in);
  return st.ok() ? st : st.WithContext(context);
}

Result<AgeIdentity> AgeIdentityFromSecretKey(std::string_view secret_key) {
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr key, X25519PrivateKey(secret_key));
  OPENRL_ASSIGN_OR_RETURN(std::string public_key, X25519PublicKey(key.get()));
  AgeIdentity id;
  id.secret_text = Bech32Encode(kSecretHrp, secret_key);  // checksum is over the lowercase form
  for (char& c : id.secret_text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  id.recipient_text = Bech32Encode(kRecipientHrp, public_key);
  return id;
}

Result<AgeIdentity> AgeGenerateIdentity() {
  OPENRL_ASSIGN_OR_RETURN(std::string secret, RandomBytes(kAgeX25519KeySize));
  return AgeIdentityFromSecretKey(secret);
}

namespace age_internal {

Status BadRecipient(const std::string& why) { return InvalidArgument("age recipient: " + why); }

Result<std::string> SealFileKey(std::string_view wrap_key, std::string_view file_key) {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return Internal("cipher context: " + OpenSslError());
  return Seal(ctx.get(), wrap_key, std::string(12, '\0'), file_key);
}

std::string StanzaText(std::string_view args, std::string_view body) {
  std::string text = "-> " + std::string(args) + "\n";
  std::string b64 = Base64NoPad(body);
  size_t pos = 0;
  for (; b64.size() - pos >= 64; pos += 64) text += b64.substr(pos, 64) + "\n";
  text += b64.substr(pos) + "\n";
  return text;
}

std::string Base64NoPad(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(U8(out), U8(bytes), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

Result<std::string> HkdfSha256(std::string_view ikm, std::string_view salt, std::string_view info) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return Internal("HKDF unavailable: " + OpenSslError());
  KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf));
  EVP_KDF_free(kdf);
  if (!ctx) return Internal("HKDF context: " + OpenSslError());
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] =
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(ikm.data()), ikm.size());
  // An absent salt is RFC 5869's empty salt; OpenSSL may reject a zero-length salt parameter.
  if (!salt.empty())
    params[n++] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()), salt.size());
  params[n++] =
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size());
  params[n] = OSSL_PARAM_construct_end();
  std::string out(32, '\0');
  if (EVP_KDF_derive(ctx.get(), U8(out), out.size(), params) != 1)
    return Internal("HKDF-SHA256: " + OpenSslError());
  return out;
}

// ChaCha20-Poly1305 with no associated data; returns ciphertext || 16-byte tag.
Result<std::string> Seal(EVP_CIPHER_CTX* ctx, std::string_view key, std::string_view nonce,
                         std::string_view plaintext) {
  std::string out(plaintext.size() + kTagSize, '\0');
  int len = 0, final_len = 0;
  bool ok = EVP_EncryptInit_ex2(ctx, EVP_chacha20_poly1305(), U8(key), U8(nonce), nullptr) == 1 &&
            (plaintext.empty() ||
             EVP_EncryptUpdate(ctx, U8(out), &len, U8(plaintext), static_cast<int>(plaintext.size())) == 1) &&
            EVP_EncryptFinal_ex(ctx, U8(out) + len, &final_len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagSize, U8(out) + plaintext.size()) == 1;
  if (!ok || static_cast<size_t>(len) + static_cast<size_t>(final_len) != plaintext.size())
    return Internal("ChaCha20-Poly1305: " + OpenSslError());
  return out;
}

Result<PkeyPtr> X25519PrivateKey(std::string_view secret) {
  if (secret.size() != kAgeX25519KeySize) return InvalidArgument("X25519 secret key must be 32 bytes");
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, U8(secret), secret.size()));
  if (!key) return Internal("X25519 private key: " + OpenSslError());
  return key;
}

Result<std::string> X25519PublicKey(EVP_PKEY* key) {
  std::string out(kAgeX25519KeySize, '\0');
  size_t len = out.size();
  if (EVP_PKEY_get_raw_public_key(key, U8(out), &len) != 1 || len != out.size())
    return Internal("X25519 public key: " + OpenSslError());
  return out;
}

// OpenSSL already fails on an all-zero result (a low-order peer point); the explicit check
// keeps the spec's rule visible and independent of that behaviour.
Result<std::string> X25519SharedSecret(EVP_PKEY* secret, std::string_view peer_public) {
  PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, U8(peer_public), peer_public.size()));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(secret, nullptr));
  std::string out(kAgeX25519KeySize, '\0');
  size_t len = out.size();
  if (!peer || !ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1) {
    return Internal("X25519 setup: " + OpenSslError());
  }
  if (EVP_PKEY_derive(ctx.get(), U8(out), &len) != 1 || len != out.size() ||
      CRYPTO_memcmp(out.data(), std::string(out.size(), '\0').data(), out.size()) == 0) {
    ERR_clear_error();
    return InvalidArgument(
        "X25519 with the recipient key gives an all-zero shared secret (a low-order point, not a real key)");
  }
  return out;
}

}  // namespace age_internal
}  // namespace openrl::crypto
