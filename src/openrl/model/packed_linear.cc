#include "openrl/model/packed_linear.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#ifdef OPENRL_HAVE_LIBXSMM
#include <libxsmm.h>
#endif

namespace openrl::model {

#ifdef OPENRL_HAVE_LIBXSMM
namespace {

// A column-major kernel C(m×n) = A(m×k)·B(k×n), beta 0. Row-major y (rows×out) is column-major
// yᵀ, so with A = one block of Wᵀ (m = its columns, lda = m), B = xᵀ (ldb = in) and C = that
// block's columns of yᵀ (ldc = out) each call writes rows×m outputs. libxsmm caches the code it
// generates per shape, so asking again is a lookup.
libxsmm_smmfunction Kernel(int64_t m, int64_t rows, int64_t in, int64_t out) {
  float alpha = 1.0f, beta = 0.0f;
  int flags = LIBXSMM_GEMM_FLAG_NONE;
  libxsmm_blasint lm = m, ln = rows, lk = in, lda = m, ldb = in, ldc = out;
  libxsmm_smmfunction fn = libxsmm_smmdispatch(lm, ln, lk, &lda, &ldb, &ldc, &alpha, &beta, &flags, nullptr);
  if (fn == nullptr)
    throw std::runtime_error("libxsmm: no kernel for a " + std::to_string(m) + "x" + std::to_string(rows) +
                             "x" + std::to_string(in) + " GEMM");
  return fn;
}

}  // namespace
#endif

namespace {

struct FrozenPackedFunction : torch::autograd::Function<FrozenPackedFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const PackedLinear* packed) {
    ctx->save_for_backward({w});
    return packed->Apply(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const at::Tensor w = ctx->get_saved_variables()[0];
    const at::Tensor& dy = grad_out[0];
    std::vector<int64_t> sizes = dy.sizes().vec();
    sizes.back() = w.size(1);
    at::Tensor dx = at::mm(dy.reshape({-1, w.size(0)}), w).view(sizes);
    return {dx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool PackedLinear::Available() {
#ifdef OPENRL_HAVE_LIBXSMM
  static const bool available = [] {
    if (const char* v = std::getenv("OPENRL_PACKED_GEMM"); v != nullptr && std::strcmp(v, "0") == 0)
      return false;
    libxsmm_init();
    return libxsmm_get_target_archid() >= LIBXSMM_X86_AVX2;
  }();
  return available;
#else
  return false;
#endif
}

PackedLinear::PackedLinear(const at::Tensor& w) {
  if (w.dim() != 2 || w.scalar_type() != at::kFloat || !w.device().is_cpu())
    throw std::invalid_argument("PackedLinear: the weight must be a 2-D fp32 CPU tensor");
  out_ = w.size(0);
  in_ = w.size(1);
  full_blocks_ = out_ / kBlock;
  tail_ = out_ % kBlock;
  c10::NoGradGuard no_grad;
  at::Tensor wd = w.detach();
  if (full_blocks_ > 0)
    blocks_ = wd.narrow(0, 0, full_blocks_ * kBlock)
                  .reshape({full_blocks_, kBlock, in_})
                  .transpose(1, 2)
                  .contiguous();
  if (tail_ > 0) tail_block_ = wd.narrow(0, full_blocks_ * kBlock, tail_).t().contiguous();
}

int64_t PackedLinear::bytes() const {
  return (blocks_.defined() ? blocks_.nbytes() : 0) + (tail_block_.defined() ? tail_block_.nbytes() : 0);
}

at::Tensor PackedLinear::Apply(const at::Tensor& x) const {
  if (x.size(-1) != in_ || x.scalar_type() != at::kFloat || !x.device().is_cpu())
    throw std::invalid_argument("PackedLinear: input must be fp32 on CPU with " + std::to_string(in_) +
                                " features");
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = out_;
#ifdef OPENRL_HAVE_LIBXSMM
  RECORD_FUNCTION("openrl::PackedLinear", std::vector<c10::IValue>({x}));  // seen by the profiler
  at::Tensor x2 = x.reshape({-1, in_}).contiguous();
  int64_t rows = x2.size(0);
  at::Tensor y = at::empty({rows, out_}, x2.options());
  const float* xp = x2.const_data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float* bp = full_blocks_ > 0 ? blocks_.const_data_ptr<float>() : nullptr;
  const float* tp = tail_ > 0 ? tail_block_.const_data_ptr<float>() : nullptr;
  const int64_t calls = full_blocks_ + (tail_ > 0 ? 1 : 0);
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxRows) {
    int64_t n = std::min(kMaxRows, rows - r0);
    libxsmm_smmfunction full = full_blocks_ > 0 ? Kernel(kBlock, n, in_, out_) : nullptr;
    libxsmm_smmfunction tail = tail_ > 0 ? Kernel(tail_, n, in_, out_) : nullptr;
    const float* xr = xp + r0 * in_;
    float* yr = yp + r0 * out_;
    at::parallel_for(0, calls, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        if (b < full_blocks_) {
          full(bp + b * in_ * kBlock, xr, yr + b * kBlock);
        } else {
          tail(tp, xr, yr + full_blocks_ * kBlock);
        }
      }
    });
  }
  return y.view(sizes);
#else
  throw std::logic_error("PackedLinear: this build has no libxsmm");
#endif
}

at::Tensor PackedLinear::ApplyFrozen(const std::shared_ptr<const PackedLinear>& packed, const at::Tensor& w,
                                     const at::Tensor& x) {
  if (w.dim() != 2 || w.size(0) != packed->out() || w.size(1) != packed->in())
    throw std::invalid_argument(
        "PackedLinear::ApplyFrozen: the weight is not the one this copy was made from");
  if (!c10::GradMode::is_enabled() || !x.requires_grad()) return packed->Apply(x);
  return FrozenPackedFunction::apply(x, w.detach(), packed.get());
}

}  // namespace openrl::model
