#include "openrl/model/attention.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

namespace openrl::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The additive form of a boolean mask, as at::scaled_dot_product_attention builds it.
at::Tensor Additive(const at::Tensor& mask, at::ScalarType dtype) {
  if (!mask.defined()) return {};
  return at::zeros(mask.sizes(), mask.options().dtype(dtype)).masked_fill_(mask.logical_not(), -INFINITY);
}

struct Fp32BackwardAttention : torch::autograd::Function<Fp32BackwardAttention> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const std::optional<at::Tensor>& opt_mask, double scale) {
    at::Tensor mask = opt_mask.value_or(at::Tensor());
    bool causal = !mask.defined();
    at::Tensor additive = Additive(mask, q.scalar_type());
    auto [out, lse] = at::_scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, causal, additive.defined() ? std::optional<at::Tensor>(additive) : std::nullopt, scale);
    ctx->save_for_backward({q, k, v, out, lse, mask});
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto s = ctx->get_saved_variables();
    const at::Tensor &q = s[0], &k = s[1], &v = s[2], &out = s[3], &lse = s[4], &mask = s[5];
    double scale = ctx->saved_data["scale"].toDouble();
    bool causal = !mask.defined();
    at::Tensor additive = Additive(mask, at::kFloat);
    auto f = [](const at::Tensor& t) { return t.to(at::kFloat); };
    auto [dq, dk, dv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
        f(grad_out[0]), f(q), f(k), f(v), f(out), lse, 0.0, causal,
        additive.defined() ? std::optional<at::Tensor>(additive) : std::nullopt, scale);
    return {dq.to(q.scalar_type()), dk.to(k.scalar_type()), dv.to(v.scalar_type()), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor DotProductAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                               double scale) {
  bool reduced = q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf;
  bool training = at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (q.is_cpu() && reduced && training && k.size(2) <= kFp32BackwardMaxKeys && q.size(2) == k.size(2))
    return Fp32BackwardAttention::apply(q, k, v, mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt,
                                        scale);
  if (mask.defined()) return at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, scale, /*enable_gqa=*/true);
  return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, scale, /*enable_gqa=*/true);
}

}  // namespace openrl::model
