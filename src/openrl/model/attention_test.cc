// DotProductAttention: on CPU in bf16 under autograd (up to kFp32BackwardMaxKeys keys) it takes
// the flash forward with an fp32 backward; its output and input gradients must equal attention
// computed in fp32, causal and with a padding mask, with grouped-query heads. Longer sequences,
// fp32 and inference keep at::scaled_dot_product_attention.
#include "openrl/model/attention.h"

#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <ATen/core/grad_mode.h>

#include <string>

namespace openrl::model {
namespace {

struct Out {
  at::Tensor out, dq, dk, dv;
  std::string fn;
};

Out Run(const at::Tensor& q0, const at::Tensor& k0, const at::Tensor& v0, const at::Tensor& mask, const at::Tensor& g,
        at::ScalarType dtype, bool reference) {
  at::Tensor q = q0.to(dtype).detach().requires_grad_(true), k = k0.to(dtype).detach().requires_grad_(true),
             v = v0.to(dtype).detach().requires_grad_(true);
  double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor out = reference ? (mask.defined() ? at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, scale, true)
                                               : at::scaled_dot_product_attention(q, k, v, {}, 0.0, true, scale, true))
                             : DotProductAttention(q, k, v, mask, scale);
  torch::autograd::backward({out}, {g.to(dtype)});
  return {out.detach().to(at::kFloat), q.grad().to(at::kFloat), k.grad().to(at::kFloat), v.grad().to(at::kFloat),
          out.grad_fn() ? out.grad_fn()->name() : ""};
}

double MaxErr(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

void Check(int64_t T, bool with_mask, bool expect_fp32_backward) {
  SCOPED_TRACE("T " + std::to_string(T) + (with_mask ? " masked" : " causal"));
  at::manual_seed(3);
  int64_t B = 2, Hq = 6, Hkv = 2, D = 16;
  at::Tensor q = at::randn({B, Hq, T, D}), k = at::randn({B, Hkv, T, D}), v = at::randn({B, Hkv, T, D});
  at::Tensor g = at::randn({B, Hq, T, D});
  at::Tensor mask;
  if (with_mask) {  // row 1 is left-padded by 3: its padding keys are masked; each query sees itself
    at::Tensor causal = at::ones({T, T}, at::kBool).tril();
    at::Tensor valid = at::ones({B, 1, 1, T}, at::kBool);
    valid[1].narrow(-1, 0, 3).fill_(false);
    mask = (causal.view({1, 1, T, T}) & valid) | at::eye(T, at::kBool).view({1, 1, T, T});
  }
  Out want = Run(q, k, v, mask, g, at::kFloat, /*reference=*/true);
  Out got = Run(q, k, v, mask, g, at::kBFloat16, /*reference=*/false);
  EXPECT_EQ(got.fn.find("Fp32BackwardAttention") != std::string::npos, expect_fp32_backward) << got.fn;
  // bf16 inputs and outputs: within bf16 rounding of the fp32 result.
  EXPECT_LT(MaxErr(got.out, want.out), 3e-2);
  EXPECT_LT(MaxErr(got.dq, want.dq), 6e-2);
  EXPECT_LT(MaxErr(got.dk, want.dk), 6e-2);
  EXPECT_LT(MaxErr(got.dv, want.dv), 6e-2);
  EXPECT_GT(want.dk.abs().max().item<double>(), 0.1);
}

TEST(DotProductAttention, Bf16TrainingTakesTheFp32BackwardAndMatchesFp32) {
  Check(9, false, true);
  Check(9, true, true);
  Check(kFp32BackwardMaxKeys, true, true);
}

TEST(DotProductAttention, LongerSequencesKeepTheLibraryKernel) { Check(kFp32BackwardMaxKeys + 1, false, false); }

TEST(DotProductAttention, Fp32AndInferenceKeepTheLibraryKernel) {
  at::Tensor q = at::randn({1, 2, 5, 8}).requires_grad_(true), k = at::randn({1, 2, 5, 8}), v = at::randn({1, 2, 5, 8});
  at::Tensor out = DotProductAttention(q, k, v, {}, 0.35);
  EXPECT_EQ(std::string(out.grad_fn()->name()).find("Fp32BackwardAttention"), std::string::npos);
  at::NoGradGuard no_grad;
  at::Tensor qb = q.detach().to(at::kBFloat16);
  at::Tensor ob = DotProductAttention(qb, k.to(at::kBFloat16), v.to(at::kBFloat16), {}, 0.35);
  EXPECT_FALSE(ob.requires_grad());
  EXPECT_LT(MaxErr(ob.to(at::kFloat), out.detach()), 3e-2);
}

}  // namespace
}  // namespace openrl::model
