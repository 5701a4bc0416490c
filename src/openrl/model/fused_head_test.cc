// The chunked head equals log_softmax of the full logits, in value and in gradient, across chunk
// boundaries and in bf16.
#include "openrl/model/fused_head.h"

#include <gtest/gtest.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

namespace openrl::model {
namespace {

void Compare(at::ScalarType dtype, int64_t chunk_rows, double tol) {
  at::manual_seed(7);
  int64_t N = 10, H = 16, V = 97;
  at::Tensor hidden = at::randn({N, H}).to(dtype);
  at::Tensor head = (at::randn({V, H}) * 0.5).to(dtype);
  at::Tensor targets = at::randint(0, V, {N}, at::kLong);
  at::Tensor g = at::randn({N});

  at::Tensor h1 = hidden.clone().requires_grad_(true);
  at::Tensor logits = at::matmul(h1, head.t()).to(at::kFloat);
  at::Tensor want = logits.log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1);
  torch::autograd::backward({want}, {g});

  at::Tensor h2 = hidden.clone().requires_grad_(true);
  at::Tensor got = ChunkedHeadLogprobs(h2, head.t().contiguous(), targets, chunk_rows);
  torch::autograd::backward({got}, {g});

  EXPECT_LT((got - want).abs().max().item<double>(), tol);
  EXPECT_LT((h2.grad().to(at::kFloat) - h1.grad().to(at::kFloat)).abs().max().item<double>(), tol);
  EXPECT_GT(h2.grad().abs().max().item<double>(), 0.01);  // a real gradient, not zeros
}

TEST(ChunkedHead, MatchesFullLogSoftmaxFp32) {
  Compare(at::kFloat, 3, 1e-5);  // chunks of 3, 3, 3 and 1 rows
  Compare(at::kFloat, 0, 1e-5);  // one chunk
}

TEST(ChunkedHead, MatchesFullLogSoftmaxBf16) { Compare(at::kBFloat16, 4, 2e-2); }

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
