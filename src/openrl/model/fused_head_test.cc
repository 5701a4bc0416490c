// The chunked head equals log_softmax of the full logits, in value and in gradient, across chunk
// boundaries and in bf16.
#include "openrl/model/fused_head.h"

#include <gtest/gtest.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <string>

namespace openrl::model {
namespace {

// With `train_head` the head's weights take a gradient too (full fine-tuning): they go in as the
// transposed view of the (V, H) weight, as the model passes them. With `several` > 0, each row has
// that many targets (N, K), one of them repeated.
void Compare(at::ScalarType dtype, int64_t chunk_rows, double tol, int64_t keep_bytes = int64_t{256} << 20,
             bool train_head = false, int64_t several = 0) {
  at::manual_seed(7);
  int64_t N = 10, H = 16, V = 97;
  at::Tensor hidden = at::randn({N, H}).to(dtype);
  at::Tensor head = (at::randn({V, H}) * 0.5).to(dtype);
  at::Tensor targets =
      several > 0 ? at::randint(0, V, {N, several}, at::kLong) : at::randint(0, V, {N}, at::kLong);
  if (several > 1) targets[2][1] = targets[2][0];  // the same token twice: both gradients add up
  at::Tensor g = at::randn(targets.sizes());

  at::Tensor h1 = hidden.clone().requires_grad_(true), w1 = head.clone().requires_grad_(train_head);
  at::Tensor logits = at::matmul(h1, w1.t()).to(at::kFloat);
  at::Tensor want = several > 0 ? logits.log_softmax(-1).gather(1, targets)
                                : logits.log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1);
  torch::autograd::backward({want}, {g});

  at::Tensor h2 = hidden.clone().requires_grad_(true), w2 = head.clone().requires_grad_(train_head);
  at::Tensor got = ChunkedHeadLogprobs(h2, train_head ? w2.t() : w2.t().contiguous(), targets, chunk_rows, keep_bytes);
  torch::autograd::backward({got}, {g});

  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LT((got - want).abs().max().item<double>(), tol);
  EXPECT_LT((h2.grad().to(at::kFloat) - h1.grad().to(at::kFloat)).abs().max().item<double>(), tol);
  EXPECT_GT(h2.grad().abs().max().item<double>(), 0.01);  // a real gradient, not zeros
  if (!train_head) return;
  ASSERT_TRUE(w2.grad().defined());
  EXPECT_EQ(w2.grad().sizes(), w1.grad().sizes());
  // The head's gradient sums over rows (and, chunked, over chunks: one rounding each), so it is
  // compared relative to its size: bf16 keeps ~3 significant digits.
  double scale = std::max(1.0, w1.grad().abs().max().item<double>());
  EXPECT_LT((w2.grad().to(at::kFloat) - w1.grad().to(at::kFloat)).abs().max().item<double>(), tol * scale);
  EXPECT_GT(w2.grad().abs().max().item<double>(), 0.01);
  // Only the head trained (the hidden states need no gradient): the head's gradient alone.
  at::Tensor w3 = head.clone().requires_grad_(true);
  torch::autograd::backward({ChunkedHeadLogprobs(hidden, w3.t(), targets, chunk_rows, keep_bytes)}, {g});
  EXPECT_LT((w3.grad().to(at::kFloat) - w1.grad().to(at::kFloat)).abs().max().item<double>(), tol * scale);
}

TEST(ChunkedHead, MatchesFullLogSoftmaxFp32) {
  Compare(at::kFloat, 3, 1e-5);                       // chunks of 3, 3, 3 and 1 rows
  Compare(at::kFloat, 0, 1e-5);                       // one chunk
  Compare(at::kFloat, 3, 1e-5, /*keep_bytes=*/0);     // logits recomputed in the backward
}

TEST(ChunkedHead, MatchesFullLogSoftmaxBf16) {
  Compare(at::kBFloat16, 4, 2e-2);                 // softmax kept for the backward
  Compare(at::kBFloat16, 4, 2e-2, /*keep_bytes=*/0);  // logits recomputed in the backward
}

// Matmuls in the backward of 4 chunks: one per chunk when the softmax was kept, two when the
// logits are recomputed.
int64_t BackwardMatmuls(at::ScalarType dtype, int64_t keep_bytes) {
  static thread_local int64_t count = 0;
  at::Tensor hidden = at::randn({8, 16}).to(dtype).requires_grad_(true);
  at::Tensor head_t = at::randn({16, 97}).to(dtype);
  at::Tensor targets = at::randint(0, 97, {8}, at::kLong);
  at::Tensor lp = ChunkedHeadLogprobs(hidden, head_t, targets, 2, keep_bytes);
  count = 0;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback([](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
        if (std::string(fn.name()) == "aten::mm") ++count;
        return nullptr;
      }).scopes({at::RecordScope::FUNCTION}));
  torch::autograd::backward({lp.sum()});
  at::removeCallback(handle);
  return count;
}

TEST(ChunkedHead, KeepsTheSoftmaxWithinTheBudget) {
  EXPECT_EQ(BackwardMatmuls(at::kFloat, 1 << 20), 4);     // 8×97 fp32 fits 1 MiB
  EXPECT_EQ(BackwardMatmuls(at::kBFloat16, 1 << 20), 4);
  EXPECT_EQ(BackwardMatmuls(at::kFloat, 0), 8);           // over budget: recomputed
  EXPECT_EQ(BackwardMatmuls(at::kBFloat16, 0), 8);
}

TEST(ChunkedHead, TrainedHeadGetsItsGradient) {
  Compare(at::kFloat, 3, 1e-5, int64_t{256} << 20, true);  // softmax kept
  Compare(at::kFloat, 3, 1e-5, 0, true);                   // recomputed
  Compare(at::kFloat, 0, 1e-5, 0, true);                   // one chunk
  Compare(at::kBFloat16, 4, 2e-2, int64_t{256} << 20, true);
  Compare(at::kBFloat16, 4, 2e-2, 0, true);
}

TEST(ChunkedHead, SeveralTargetsPerRow) {  // top-K distillation: (N, K) targets
  Compare(at::kFloat, 3, 1e-5, int64_t{256} << 20, false, 4);
  Compare(at::kFloat, 3, 1e-5, 0, false, 4);
  Compare(at::kFloat, 0, 1e-5, 0, true, 4);
  Compare(at::kFloat, 4, 1e-5, int64_t{256} << 20, true, 1);  // (N, 1): one column
  Compare(at::kBFloat16, 4, 2e-2, int64_t{256} << 20, true, 3);
}

TEST(ChunkedHead, NoGradientModeGivesValuesOnly) {
  at::NoGradGuard ng;
  at::Tensor hidden = at::randn({5, 8});
  at::Tensor head = at::randn({11, 8});
  at::Tensor targets = at::tensor(std::vector<int64_t>{0, 3, 10, 7, 1});
  at::Tensor got = ChunkedHeadLogprobs(hidden, head.t().contiguous(), targets, 2);
  at::Tensor want = at::matmul(hidden, head.t()).log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1);
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-5);
}

}  // namespace
}  // namespace openrl::model
