// Fused CPU kernels for a decode step in fp32: the work between a layer's GEMMs, one pass each.
//
// Why: a decode step of a small model on CPU runs some 600 tiny ATen ops (norms, RoPE, cache
// writes, masks, residual adds) that each cost more in dispatch and allocation than in arithmetic,
// and PyTorch's attention kernel takes 0.35 ms per layer for 16 single-row queries over ~150 keys
// (bench/RESULTS.md). These kernels do the same arithmetic in a few calls per layer. Their inner
// loops are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time.
//
// Every tensor is fp32 on CPU; rows are the batch (one position per row). Results agree with the
// ATen formulas of Transformer::RmsNorm and Transformer::Attention up to summation order.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace openrl::model::decode {

// RMSNorm of each row of x (N, H): x·rsqrt(mean(x²) + eps)·w, or ·(1 + w) when one_plus (Gemma).
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus);

// The residual step between two norms, in one pass over h (N, H), which it updates in place:
// h += (post defined ? RmsNorm(a, post) : a); returns RmsNorm(h, next).
at::Tensor AddRmsNorm(at::Tensor& h, const at::Tensor& a, const at::Tensor& post, const at::Tensor& next,
                      double eps, bool one_plus);

// silu(g)·u for gate|up rows gu (..., 2·ff) → (..., ff).
at::Tensor SiluMul(const at::Tensor& gu);

struct AttentionShape {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  double scale = 1.0;
  double norm_eps = 1e-6;
  bool one_plus_norm = false;
  at::Tensor q_norm, k_norm;      // (head_dim) per-head RMSNorm weights (Qwen 3, Gemma 3), or undefined
  std::optional<double> softcap;  // scores ← cap·tanh(scores/cap)
  std::optional<int64_t> window;  // sliding window in cache slots (a key is seen if slot > query - window)
};

// One decode position per row through attention, writing its key and value into the cache:
//  - qkv (B, (heads + 2·kv_heads)·head_dim): the fused q|k|v projection of each row;
//  - cos, sin (B, head_dim): the RoPE tables of each row's position;
//  - keys, values (B, kv_heads, capacity, head_dim): the layer's cache; slot `slot` is written;
//  - valid (B, ≥ slot + 1) bool: real cache slots; a row always sees its own slot.
// q and k get their norms, then RoPE; each group of heads reads its key/value head once.
// Returns (B, heads·head_dim).
at::Tensor Attention(const AttentionShape& shape, const at::Tensor& qkv, const at::Tensor& cos,
                     const at::Tensor& sin, at::Tensor& keys, at::Tensor& values, const at::Tensor& valid,
                     int64_t slot);

}  // namespace openrl::model::decode
