// age's SSH recipients (the ssh-ed25519 and ssh-rsa stanzas of age-encryption.org/v1, as age and
// rage write them): an authorized_keys line is parsed into its wire blob; an Ed25519 key is used
// through its X25519 (Montgomery) form with a tweak bound to the SSH key, an RSA key through
// RSA-OAEP-SHA256. Each stanza names the key by the first 4 bytes of the blob's SHA-256.
#include <openssl/core_names.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <memory>

#include "openrl/core/age_internal.h"
#include "openrl/core/crypto.h"

namespace openrl::crypto::age_internal {
namespace {

using internal::BnCtxPtr;
using internal::BnPtr;
using internal::OpenSslError;
using internal::ParamBldPtr;
using internal::ParamPtr;
using internal::PkeyCtxPtr;
using internal::PkeyPtr;
using internal::U8;

constexpr std::string_view kEd25519Type = "ssh-ed25519";
constexpr std::string_view kRsaType = "ssh-rsa";
constexpr std::string_view kEd25519Label = "age-encryption.org/v1/ssh-ed25519";
constexpr std::string_view kRsaLabel = "age-encryption.org/v1/ssh-rsa";
constexpr size_t kMaxBlobBytes = 4096;  // a 16384-bit RSA key's blob is about 2 KiB

Status BadSsh(const std::string& type, const std::string& why) {
  return BadRecipient("SSH key (" + type + "): " + why);
}

// Standard base64 with its padding, as authorized_keys lines carry it.
Result<std::string> Base64Decode(std::string_view text, const std::string& type) {
  if (text.empty() || text.size() % 4 != 0 || text.size() > 4 * ((kMaxBlobBytes + 2) / 3))
    return BadSsh(type, "the key is not base64 of a plausible length");
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool pad = c == '=' && i + 2 >= text.size() && (i + 1 == text.size() || text[i + 1] == '=');
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || pad))
      return BadSsh(type, "the key is not base64 (character " + std::to_string(i) + " of it)");
  }
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(U8(out), U8(text), static_cast<int>(text.size()));
  if (n < 0) return BadSsh(type, "the key is not base64");
  size_t padding = (text.back() == '=') + (text.size() >= 2 && text[text.size() - 2] == '=');
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

// Reads the SSH wire format's string (uint32 big-endian length, then the bytes).
class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}
  Result<std::string_view> String(const std::string& type, const char* what) {
    if (data_.size() < 4) return BadSsh(type, std::string("the key blob ends before its ") + what);
    uint32_t n = (static_cast<uint32_t>(static_cast<unsigned char>(data_[0])) << 24) |
                 (static_cast<uint32_t>(static_cast<unsigned char>(data_[1])) << 16) |
                 (static_cast<uint32_t>(static_cast<unsigned char>(data_[2])) << 8) |
                 static_cast<uint32_t>(static_cast<unsigned char>(data_[3]));
    if (data_.size() - 4 < n) return BadSsh(type, std::string("the key blob ends inside its ") + what);
    std::string_view out = data_.substr(4, n);
    data_.remove_prefix(4 + n);
    return out;
  }
  // An mpint that must be positive: its magnitude, big-endian, without leading zeros.
  Result<std::string> PositiveMpint(const std::string& type, const char* what) {
    OPENRL_ASSIGN_OR_RETURN(std::string_view v, String(type, what));
    if (!v.empty() && (static_cast<unsigned char>(v[0]) & 0x80))
      return BadSsh(type, std::string("its ") + what + " is negative");
    while (!v.empty() && v[0] == '\0') v.remove_prefix(1);
    if (v.empty()) return BadSsh(type, std::string("its ") + what + " is zero");
    return std::string(v);
  }
  bool AtEnd() const { return data_.empty(); }

 private:
  std::string_view data_;
};

// u = (1 + y) / (1 - y) mod 2^255 - 19, y being the Edwards point's y coordinate (the encoding
// without its sign bit). Like age, no check that the point is on the curve beyond the map existing.
Result<std::string> Ed25519ToX25519(std::string_view ed25519_public) {
  std::string y_le(ed25519_public);
  y_le[31] = static_cast<char>(static_cast<unsigned char>(y_le[31]) & 0x7f);
  BnCtxPtr ctx(BN_CTX_new());
  BnPtr p(BN_new()), y(BN_lebin2bn(U8(y_le), 32, nullptr)), one(BN_new()), num(BN_new()), den(BN_new()),
      u(BN_new());
  if (!ctx || !p || !y || !one || !num || !den || !u) return Internal("BIGNUM: " + OpenSslError());
  bool ok = BN_set_word(p.get(), 1) == 1 && BN_lshift(p.get(), p.get(), 255) == 1 &&
            BN_sub_word(p.get(), 19) == 1 && BN_set_word(one.get(), 1) == 1 &&
            BN_mod_add(num.get(), one.get(), y.get(), p.get(), ctx.get()) == 1 &&
            BN_mod_sub(den.get(), one.get(), y.get(), p.get(), ctx.get()) == 1;
  if (!ok) return Internal("BIGNUM: " + OpenSslError());
  if (BN_is_zero(den.get()))
    return BadSsh(std::string(kEd25519Type),
                  "the Ed25519 key has no X25519 form (y = 1); it is not a usable key");
  BnPtr inv(BN_mod_inverse(nullptr, den.get(), p.get(), ctx.get()));
  if (!inv || BN_mod_mul(u.get(), num.get(), inv.get(), p.get(), ctx.get()) != 1)
    return Internal("BIGNUM: " + OpenSslError());
  std::string out(kAgeX25519KeySize, '\0');
  if (BN_bn2lebinpad(u.get(), U8(out), static_cast<int>(out.size())) != static_cast<int>(out.size()))
    return Internal("BIGNUM: " + OpenSslError());
  return out;
}

Result<PkeyPtr> RsaPublicKey(const AgeRecipient& r) {
  BnPtr n(BN_bin2bn(U8(r.rsa_n), static_cast<int>(r.rsa_n.size()), nullptr));
  BnPtr e(BN_bin2bn(U8(r.rsa_e), static_cast<int>(r.rsa_e.size()), nullptr));
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!n || !e || !bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1)
    return Internal("RSA key parameters: " + OpenSslError());
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1 || key == nullptr)
    return Internal("RSA key: " + OpenSslError());
  return PkeyPtr(key);
}

// base64 (no padding) of the first 4 bytes of SHA-256 of the key's wire encoding.
std::string Fingerprint(const AgeRecipient& r) { return Base64NoPad(Sha256(r.ssh_key).substr(0, 4)); }

}  // namespace

Result<AgeRecipient> ParseSshRecipient(std::string_view text) {
  size_t space = text.find(' ');
  // The type is quoted only when it is short and printable: never a pasted private key's bytes.
  std::string type(text.substr(0, std::min(space, text.size())));
  bool printable = type.size() <= 40;
  for (char c : type) printable &= c > 32 && c < 127;
  if (!printable) type = "unrecognized type";
  if (type != kEd25519Type && type != kRsaType)
    return BadRecipient("SSH keys of type " + type +
                        " are not supported; age takes ssh-ed25519 and ssh-rsa keys (or native age1 keys)");
  if (space == std::string_view::npos)
    return BadSsh(type, "no key after the type (want '" + type + " AAAA...')");
  std::string_view rest = text.substr(space + 1);
  std::string_view b64 = rest.substr(0, rest.find(' '));  // what follows is a comment
  for (char c : rest)
    if (c == '\n' || c == '\r' || c == '\0') return BadSsh(type, "more than one line");
  OPENRL_ASSIGN_OR_RETURN(std::string blob, Base64Decode(b64, type));
  WireReader in(blob);
  OPENRL_ASSIGN_OR_RETURN(std::string_view inner, in.String(type, "type"));
  if (inner != type) return BadSsh(type, "the key blob is of another type than its text says");
  AgeRecipient r;
  r.ssh_key = blob;
  if (type == kEd25519Type) {
    OPENRL_ASSIGN_OR_RETURN(std::string_view key, in.String(type, "key"));
    if (key.size() != 32)
      return BadSsh(type, "the Ed25519 key is " + std::to_string(key.size()) + " bytes, want 32");
    if (!in.AtEnd()) return BadSsh(type, "bytes follow the key in its blob");
    r.kind = AgeRecipient::Kind::kSshEd25519;
    OPENRL_ASSIGN_OR_RETURN(r.x25519_public_key, Ed25519ToX25519(key));
    return r;
  }
  OPENRL_ASSIGN_OR_RETURN(r.rsa_e, in.PositiveMpint(type, "exponent"));
  OPENRL_ASSIGN_OR_RETURN(r.rsa_n, in.PositiveMpint(type, "modulus"));
  if (!in.AtEnd()) return BadSsh(type, "bytes follow the modulus in its blob");
  int bits = static_cast<int>(r.rsa_n.size()) * 8;
  for (unsigned char top = static_cast<unsigned char>(r.rsa_n[0]); !(top & 0x80); top <<= 1) --bits;
  if (bits < kAgeMinRsaBits || bits > kAgeMaxRsaBits)
    return BadSsh(type, "the RSA key has " + std::to_string(bits) + " bits; " +
                            std::to_string(kAgeMinRsaBits) + " to " + std::to_string(kAgeMaxRsaBits) +
                            " are accepted");
  if (r.rsa_e.size() > 8 || !(static_cast<unsigned char>(r.rsa_e.back()) & 1) ||
      r.rsa_e == std::string(1, '\1'))
    return BadSsh(type, "the RSA exponent is not an odd number from 3 to 2^64");
  if (!(static_cast<unsigned char>(r.rsa_n.back()) & 1)) return BadSsh(type, "the RSA modulus is even");
  r.kind = AgeRecipient::Kind::kSshRsa;
  // Whatever else OpenSSL refuses is found now, as a 400, not when the export is written.
  Result<std::string> trial = SshRsaStanza(std::string(kFileKeySize, '\0'), r);
  if (!trial.ok())
    return BadSsh(type, "OpenSSL cannot encrypt to this RSA key (" + trial.status().message() + ")");
  return r;
}

Result<std::string> SshEd25519Stanza(std::string_view file_key, const AgeRecipient& recipient) {
  OPENRL_ASSIGN_OR_RETURN(std::string ephemeral_secret, RandomBytes(kAgeX25519KeySize));
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr ephemeral, X25519PrivateKey(ephemeral_secret));
  OPENRL_ASSIGN_OR_RETURN(std::string share, X25519PublicKey(ephemeral.get()));
  OPENRL_ASSIGN_OR_RETURN(std::string shared,
                          X25519SharedSecret(ephemeral.get(), recipient.x25519_public_key));
  // The tweak binds the secret to this SSH key: a scalar from HKDF(ikm = "", salt = the blob).
  OPENRL_ASSIGN_OR_RETURN(std::string tweak, HkdfSha256("", recipient.ssh_key, kEd25519Label));
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr tweak_key, X25519PrivateKey(tweak));
  OPENRL_ASSIGN_OR_RETURN(std::string tweaked, X25519SharedSecret(tweak_key.get(), shared));
  OPENRL_ASSIGN_OR_RETURN(std::string wrap_key,
                          HkdfSha256(tweaked, share + recipient.x25519_public_key, kEd25519Label));
  OPENRL_ASSIGN_OR_RETURN(std::string body, SealFileKey(wrap_key, file_key));
  return StanzaText(std::string(kEd25519Type) + " " + Fingerprint(recipient) + " " + Base64NoPad(share),
                    body);
}

Result<std::string> SshRsaStanza(std::string_view file_key, const AgeRecipient& recipient) {
  OPENRL_ASSIGN_OR_RETURN(PkeyPtr key, RsaPublicKey(recipient));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) != 1)
    return Internal("RSA-OAEP setup: " + OpenSslError());
  // OpenSSL takes ownership of the label buffer.
  void* label = OPENSSL_memdup(kRsaLabel.data(), kRsaLabel.size());
  if (label == nullptr ||
      EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, static_cast<int>(kRsaLabel.size())) != 1) {
    OPENSSL_free(label);
    return Internal("RSA-OAEP label: " + OpenSslError());
  }
  size_t len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, U8(file_key), file_key.size()) != 1)
    return Internal("RSA-OAEP: " + OpenSslError());
  std::string body(len, '\0');
  if (EVP_PKEY_encrypt(ctx.get(), U8(body), &len, U8(file_key), file_key.size()) != 1)
    return Internal("RSA-OAEP: " + OpenSslError());
  body.resize(len);
  return StanzaText(std::string(kRsaType) + " " + Fingerprint(recipient), body);
}

}  // namespace openrl::crypto::age_internal
