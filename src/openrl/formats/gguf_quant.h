// ggml block quantization: turning GGUF tensor bytes into floats (every type in gguf.h except
// Q8_1/Q8_K, which carry no model weights in practice; the I* integer types and F64 are plainly
// cast) and floats into the types an export writes. Results are bit-identical to the `gguf`
// Python package's quants.dequantize / quants.quantize, which follow ggml's reference C code
// (numpy's x86-64 behaviour on NaN, infinite and subnormal inputs included).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/formats/gguf.h"

namespace openrl::formats::gguf {

// True when Dequantize supports `type`.
bool CanDequantize(GgmlType type);
// Dequantizes `out.size()` elements stored as `type` in `src`. The element count must be a
// multiple of the type's block size and `src` exactly the bytes they take.
Status Dequantize(GgmlType type, std::span<const uint8_t> src, std::span<float> out);

// True when Quantize supports `type`: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.
bool CanQuantize(GgmlType type);
// Quantizes `src` (a multiple of the block size) to `type`.
Result<std::vector<uint8_t>> Quantize(GgmlType type, std::span<const float> src);

}  // namespace openrl::formats::gguf
