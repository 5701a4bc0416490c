// libFuzzer target: ParseAgeRecipient on arbitrary text (what a client puts in
// age_encryption_recipients). Bad input must come back as INVALID_ARGUMENT; an accepted recipient
// must have the shape of its kind and take a file key: encrypting to it succeeds, or is refused
// as INVALID_ARGUMENT (a key whose X25519 form is a low-order point).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "openrl/core/age.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace openrl::crypto;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  openrl::Result<AgeRecipient> r = ParseAgeRecipient(text);
  if (!r.ok()) {
    if (r.status().code() != openrl::ErrorCode::kInvalidArgument) std::abort();
    return 0;
  }
  switch (r->kind) {
    case AgeRecipient::Kind::kX25519:
      if (r->x25519_public_key.size() != kAgeX25519KeySize || !r->ssh_key.empty()) std::abort();
      break;
    case AgeRecipient::Kind::kSshEd25519:
      if (r->x25519_public_key.size() != kAgeX25519KeySize || r->ssh_key.size() != 51) std::abort();
      break;
    case AgeRecipient::Kind::kSshRsa:
      if (r->rsa_n.empty() || r->rsa_n[0] == '\0' || r->rsa_n.size() * 8 < kAgeMinRsaBits ||
          r->rsa_n.size() * 8 > kAgeMaxRsaBits + 7 || r->rsa_e.empty() || r->ssh_key.empty())
        std::abort();
      break;
  }
  openrl::Result<std::string> sealed = AgeEncrypt("fuzz", {*r});
  if (!sealed.ok() && sealed.status().code() != openrl::ErrorCode::kInvalidArgument) std::abort();
  return 0;
}
