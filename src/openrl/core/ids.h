// Random identifiers with a type prefix: NewId("run") → "run_3f9a0c…" (128 random bits, hex).
// The prefix tells a reader what an id names; ValidateId checks shape before a lookup.
#pragma once

#include <string>
#include <string_view>

#include "openrl/core/status.h"

namespace openrl {

inline constexpr size_t kIdRandomHexChars = 32;

// `prefix` must be lowercase letters, digits or '-'; the result is "<prefix>_<32 hex>".
std::string NewId(std::string_view prefix);
// OK if `id` looks like NewId(prefix) output; the error names `what` ("run id") and the value.
Status ValidateId(std::string_view id, std::string_view prefix, std::string_view what);

}  // namespace openrl
