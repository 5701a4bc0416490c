// PackedLinear: y = x·Wᵀ for the few rows of a decode step on CPU in fp32, through JIT-compiled
// small-matrix kernels (libxsmm) over a blocked copy of W.
//
// Why: at 1–32 rows a CPU GEMM is limited by how it streams the weight, not by arithmetic, and
// MKL's general kernels stream it poorly there (measured on a 2-core AMD EPYC, 2 threads, weights
// out of cache: 5–61 GFLOP/s at M = 1–16 against 9–94 for these kernels, e.g. a 16×576·576×1536
// projection in 302 µs against 644). From about 64 rows on MKL is as fast or faster; the
// transformer uses it for decode steps only (see Transformer::Projection).
//
// The copy holds W as blocks of kBlock output columns, each (in, kBlock) contiguous, so one kernel
// call reads one block front to back; blocks are spread over the intra-op threads. Built only when
// Available(): a libxsmm build whose CPU target has at least AVX2, and OPENRL_PACKED_GEMM not set
// to 0 (an operator's off switch, also how benchmarks compare the two paths in one run).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace openrl::model {

class PackedLinear {
 public:
  static constexpr int64_t kBlock = 32;    // output columns per kernel call
  static constexpr int64_t kMaxRows = 32;  // the row count up to which callers should use it

  // Whether this build and CPU can use it (decided once per process).
  static bool Available();
  // w: (out, in) fp32 on CPU. Copies it; later changes to w are not seen.
  explicit PackedLinear(const at::Tensor& w);

  int64_t in() const { return in_; }
  int64_t out() const { return out_; }
  int64_t bytes() const;  // of the blocked copy
  // x: (..., in) fp32 on CPU, any row count (taken kMaxRows rows at a time) → (..., out) fp32.
  at::Tensor Apply(const at::Tensor& x) const;

 private:
  int64_t in_ = 0, out_ = 0, full_blocks_ = 0, tail_ = 0;
  at::Tensor blocks_;      // (full_blocks, in, kBlock)
  at::Tensor tail_block_;  // (in, tail) when out % kBlock != 0
};

}  // namespace openrl::model
