// Block decoders for the k-quants (256-element super-blocks), used by gguf_quant.cc (internal to
// formats). Each turns `n_blocks` consecutive blocks at `src` into 256 * n_blocks floats.
#pragma once

#include <cstdint>

#include "openrl/formats/dtype.h"

namespace openrl::formats::gguf::internal {

inline float LoadHalf(const uint8_t* p) { return F16ToF32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

void DequantizeQ2K(const uint8_t* src, float* out, int64_t n_blocks);
void DequantizeQ3K(const uint8_t* src, float* out, int64_t n_blocks);
void DequantizeQ4K(const uint8_t* src, float* out, int64_t n_blocks);
void DequantizeQ5K(const uint8_t* src, float* out, int64_t n_blocks);
void DequantizeQ6K(const uint8_t* src, float* out, int64_t n_blocks);

}  // namespace openrl::formats::gguf::internal
