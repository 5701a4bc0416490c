// Checks shared by the GGUF reader and writer (internal to formats).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "openrl/core/status.h"
#include "openrl/formats/gguf.h"

namespace openrl::formats::gguf::internal {

// ggml tensors have at most 4 dimensions (GGML_MAX_DIMS); llama.cpp refuses more.
inline constexpr size_t kMaxDims = 4;

inline std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

inline bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// `v` rounded up to a multiple of the power of two `align`; false on overflow.
inline bool AlignUp(uint64_t v, uint64_t align, uint64_t* out) {
  uint64_t sum = 0;
  if (__builtin_add_overflow(v, align - 1, &sum)) return false;
  *out = sum & ~(align - 1);
  return true;
}

// Validates `dims` (ggml order: at most 4, none negative, element count within int64, row length
// dims[0] a multiple of the block size) and returns the bytes they take as a tensor of `type`.
// Errors are INVALID_ARGUMENT and start with `where` (e.g. "model.gguf: tensor 'w': ").
Result<uint64_t> TensorBytes(std::span<const int64_t> dims, const TypeTraits& type, const std::string& where);

// "[4096, 32]"
std::string DimsToString(std::span<const int64_t> dims);

// The value of "general.alignment" in `md` (default 32 when absent): it must be a UINT32 power
// of two, as the gguf package and llama.cpp require. Errors start with `source`.
Result<uint64_t> AlignmentOf(const Metadata& md, const std::string& source);

}  // namespace openrl::formats::gguf::internal
