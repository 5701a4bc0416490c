#include "openrl/core/ids.h"

#include <cassert>

#include "openrl/core/crypto.h"

namespace openrl {

std::string NewId(std::string_view prefix) {
  assert(!prefix.empty());
  Result<std::string> bytes = crypto::RandomBytes(kIdRandomHexChars / 2);
  // RAND_bytes only fails when the OS entropy source is broken; ids must never collide.
  if (!bytes.ok()) std::abort();
  return std::string(prefix) + "_" + crypto::HexEncode(*bytes);
}

Status ValidateId(std::string_view id, std::string_view prefix, std::string_view what) {
  auto bad = [&] {
    return InvalidArgument(std::string(what) + " '" + std::string(id.substr(0, 80)) + "' is not of the form " +
                           std::string(prefix) + "_<" + std::to_string(kIdRandomHexChars) + " hex digits>");
  };
  if (id.size() != prefix.size() + 1 + kIdRandomHexChars) return bad();
  if (id.substr(0, prefix.size()) != prefix || id[prefix.size()] != '_') return bad();
  for (char c : id.substr(prefix.size() + 1)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return bad();
  }
  return Status::Ok();
}

}  // namespace openrl
