// Scaled dot-product attention of the transformer's layers (not the soft-capped kind): one place
// that chooses how it runs. On CPU under autograd with bf16/fp16 inputs and up to
// kFp32BackwardMaxKeys keys, the forward is the flash kernel in the inputs' dtype and the backward
// the same flash kernel in fp32: PyTorch's reduced-precision CPU backward is several times slower
// than its fp32 one at these lengths (bench/RESULTS.md), and fp32 is the more exact of the two.
// Everywhere else it is at::scaled_dot_product_attention.
#pragma once

#include <ATen/ATen.h>

namespace openrl::model {

inline constexpr int64_t kFp32BackwardMaxKeys = 256;

// q (B, Hq, T, D); k, v (B, Hkv, S, D) with Hq a multiple of Hkv (grouped-query attention);
// mask: undefined (then causal) or bool (B or 1, 1, T, S), true = attend.
at::Tensor DotProductAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                               double scale);

}  // namespace openrl::model
