// PackedLinear: y = x·Wᵀ for the few rows of a decode step on CPU in fp32, through JIT-compiled
// small-matrix kernels (libxsmm) over a blocked copy of W.
//
// Why: at few rows MKL's general kernels stream the weight poorly. On a 2-core AMD EPYC, 2
// threads, 24 distinct 1536×576 weights (out of cache), at::mm ran at 6/56/73/104/121 GFLOP/s at
// 1/16/32/64/128 rows and these kernels at 18/160/196/202/212 (bench/RESULTS.md, 2026-12-07;
// an earlier timing that put the crossover near 64 rows ran these kernels on one thread). The
// transformer uses it for every projection of a frozen layer (LoRA training and serving over a
// frozen base, under autograd through ApplyFrozen) and for decode steps of up to 128 rows of a
// trained one (see Transformer::Projection).
//
// The copy holds W as blocks of kBlock output columns, each (in, kBlock) contiguous, so one kernel
// call reads one block front to back; blocks are spread over the intra-op threads. Built only when
// Available(): a libxsmm build whose CPU target has at least AVX2, and OPENRL_PACKED_GEMM not set
// to 0 (an operator's off switch, also how benchmarks compare the two paths in one run).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

namespace openrl::model {

class PackedLinear {
 public:
  static constexpr int64_t kBlock = 32;    // output columns per kernel call
  static constexpr int64_t kMaxRows = 32;  // rows per kernel call (Apply takes more in turns)

  // Whether this build and CPU can use it (decided once per process).
  static bool Available();
  // w: (out, in) fp32 on CPU. Copies it; later changes to w are not seen.
  explicit PackedLinear(const at::Tensor& w);

  int64_t in() const { return in_; }
  int64_t out() const { return out_; }
  int64_t bytes() const;  // of the blocked copy
  // x: (..., in) fp32 on CPU, any row count (taken kMaxRows rows at a time) → (..., out) fp32.
  at::Tensor Apply(const at::Tensor& x) const;
  // The same under autograd, for a frozen weight: the gradient reaches x as dy·W (an MKL GEMM
  // with `w`, the (out, in) weight this copy was made from, or a view of it); W gets none.
  // Without grad (or when x needs none) it is Apply(x), so a forward with and without grad
  // gives the same values.
  static at::Tensor ApplyFrozen(const std::shared_ptr<const PackedLinear>& packed, const at::Tensor& w,
                                const at::Tensor& x);

 private:
  int64_t in_ = 0, out_ = 0, full_blocks_ = 0, tail_ = 0;
  at::Tensor blocks_;      // (full_blocks, in, kBlock)
  at::Tensor tail_block_;  // (in, tail) when out % kBlock != 0
};

}  // namespace openrl::model
