// LoRA training over a frozen base goes through the fused projection weights and AddLoraGroup
// (one A matmul per input, the scale on the rank-sized intermediate, a block-diagonal B). Its
// log-probabilities and adapter gradients must equal the per-projection path (taken when the
// base itself is trainable), for every family, with adapters that skip some projections, with
// two adapters packed on different rows, and with LoRA dropout (same masks, same gradients).
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "openrl/model/lora.h"
#include "openrl/model/test_models.h"
#include "openrl/model/transformer.h"

namespace openrl::model {
namespace {

struct Result {
  at::Tensor logprobs;
  std::vector<at::Tensor> grads;  // both adapters' parameters, in order
};

Result Run(Transformer& m, bool base_trainable, const std::vector<LoraAdapter*>& adapters, const LoraBatch& lora,
           const at::Tensor& ids, const at::Tensor& targets, const at::Tensor& weights) {
  m.SetRequiresGrad(base_trainable);
  for (LoraAdapter* a : adapters) {
    a->SetRequiresGrad(true);
    for (at::Tensor& p : a->Parameters()) p.mutable_grad() = at::Tensor();
  }
  at::manual_seed(11);  // dropout masks
  ForwardArgs args;
  args.input_ids = ids;
  args.lora = &lora;
  at::Tensor lp = m.TargetLogprobs(m.Hidden(args), targets, &lora);
  torch::autograd::backward({(lp * weights).sum()});
  Result r{lp.detach(), {}};
  for (LoraAdapter* a : adapters)
    for (const at::Tensor& p : a->Parameters()) r.grads.push_back(p.grad().clone());
  return r;
}

double Rel(const at::Tensor& got, const at::Tensor& want) {
  return (got - want).norm().item<double>() / std::max(want.norm().item<double>(), 1e-12);
}

void Check(Family family, at::ScalarType dtype, double dropout, double tol) {
  SCOPED_TRACE(std::string(FamilyName(family)) + (dtype == at::kFloat ? " fp32" : " bf16") +
               " dropout " + std::to_string(dropout));
  ModelConfig c = testing::TinyConfig(family);
  auto m = Transformer::Init(c, dtype, at::kCPU, 3);
  LoraConfig all{4, 8};
  all.dropout = dropout;
  LoraConfig some{2, 6};  // q, v, up, down only: zero blocks in the q|k|v and gate|up groups
  some.targets = {LinearKind::kQ, LinearKind::kV, LinearKind::kUp, LinearKind::kDown};
  some.dropout = dropout;
  auto a1 = testing::RandomAdapter(c, 1, all);
  auto a2 = testing::RandomAdapter(c, 2, some);
  LoraBatch lora;
  lora.training = true;
  lora.groups = {{a1.get(), at::tensor(std::vector<int64_t>{0, 2}, at::kLong)},
                 {a2.get(), at::tensor(std::vector<int64_t>{1}, at::kLong)}};  // row 3: base only
  at::manual_seed(5);
  at::Tensor ids = at::randint(0, c.vocab_size, {4, 9}, at::kLong);
  at::Tensor targets = at::randint(0, c.vocab_size, {4, 9}, at::kLong);
  at::Tensor weights = at::randn({4, 9});

  Result grouped = Run(*m, false, {a1.get(), a2.get()}, lora, ids, targets, weights);
  Result separate = Run(*m, true, {a1.get(), a2.get()}, lora, ids, targets, weights);
  EXPECT_LT(Rel(grouped.logprobs, separate.logprobs), tol);
  ASSERT_EQ(grouped.grads.size(), separate.grads.size());
  for (size_t i = 0; i < grouped.grads.size(); ++i) {
    EXPECT_GT(separate.grads[i].abs().max().item<double>(), 0) << "tensor " << i;
    EXPECT_LT(Rel(grouped.grads[i].to(at::kFloat), separate.grads[i].to(at::kFloat)), tol) << "tensor " << i;
  }
}

TEST(LoraGroup, TrainingEqualsPerProjectionPathFp32) {
  for (Family f : {Family::kLlama, Family::kQwen3, Family::kGemma3}) Check(f, at::kFloat, 0.0, 1e-5);
}

TEST(LoraGroup, TrainingEqualsPerProjectionPathWithDropout) {
  for (Family f : {Family::kLlama, Family::kQwen3, Family::kGemma3}) Check(f, at::kFloat, 0.3, 1e-5);
}

TEST(LoraGroup, TrainingEqualsPerProjectionPathBf16) {
  // bf16 rounds at different points (one fused base matmul and one gradient sum instead of three):
  // equal within bf16 precision.
  for (Family f : {Family::kLlama, Family::kQwen3, Family::kGemma3}) Check(f, at::kBFloat16, 0.0, 3e-2);
}

}  // namespace
}  // namespace openrl::model
