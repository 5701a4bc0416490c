// PackedLinear against a float64 reference GEMM: full and partial column blocks, a weight with
// only a partial block, row counts below, at and above one kernel call's rows, leading dims.
#include "openrl/model/packed_linear.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <mutex>
#include <set>

namespace openrl::model {
namespace {

// PackedLinear and the decode kernels split their work with at::parallel_for, a header template
// that runs everything on the calling thread unless the caller was compiled with OpenMP (as the
// libtorch wheel is). That silently halved their speed on 2 cores once; this build must split.
TEST(PackedLinear, AtenParallelForUsesSeveralThreadsInThisBuild) {
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  std::mutex mu;
  std::set<int> threads;
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mu);
    threads.insert(at::get_thread_num());
  });
  at::set_num_threads(before);
  EXPECT_EQ(threads.size(), 2u) << "at::parallel_for ran on one thread: build without OpenMP?";
}

TEST(PackedLinear, MatchesReferenceGemm) {
  if (!PackedLinear::Available()) GTEST_SKIP() << "no libxsmm kernels in this build or on this CPU";
  at::manual_seed(3);
  for (int64_t out : {int64_t{5}, PackedLinear::kBlock, int64_t{96}, int64_t{1000}})
    for (int64_t in : {16, 576})
      for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{16}, PackedLinear::kMaxRows,
                           PackedLinear::kMaxRows + 1, int64_t{70}}) {
        at::Tensor w = at::randn({out, in});
        at::Tensor x = at::randn({rows, in});
        PackedLinear p(w);
        at::Tensor got = p.Apply(x);
        at::Tensor want = at::mm(x.to(at::kDouble), w.to(at::kDouble).t());
        ASSERT_EQ(got.sizes(), want.sizes());
        double err = (got.to(at::kDouble) - want).abs().max().item<double>();
        // fp32 sums of `in` products of unit normals: a few ulps of √in.
        EXPECT_LT(err, 1e-5 * in) << "out " << out << " in " << in << " rows " << rows;
      }
}

TEST(PackedLinear, KeepsLeadingDimsAndNonContiguousInput) {
  if (!PackedLinear::Available()) GTEST_SKIP() << "no libxsmm kernels in this build or on this CPU";
  at::Tensor w = at::randn({64, 40});
  at::Tensor x = at::randn({3, 40, 5}).transpose(1, 2);  // (3, 5, 40), not contiguous
  at::Tensor got = PackedLinear(w).Apply(x);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{3, 5, 64}));
  EXPECT_TRUE(at::allclose(got, at::matmul(x, w.t()), 1e-5, 1e-5));
}

// Under autograd a frozen weight's packed copy gives the same values as without grad (so a forward
// and a forward+backward agree exactly), and the input's gradient is dy·W.
TEST(PackedLinear, ApplyFrozenHasTheSameValuesAndTheInputGradient) {
  if (!PackedLinear::Available()) GTEST_SKIP() << "no libxsmm kernels in this build or on this CPU";
  at::manual_seed(5);
  at::Tensor w = at::randn({96, 40});
  auto p = std::make_shared<const PackedLinear>(w);
  at::Tensor x = at::randn({2, 35, 40}).requires_grad_(true);
  at::Tensor y = PackedLinear::ApplyFrozen(p, w, x);
  ASSERT_TRUE(y.requires_grad());
  {
    c10::NoGradGuard no_grad;
    EXPECT_TRUE(at::equal(y.detach(), p->Apply(x.detach())));
    EXPECT_TRUE(at::equal(PackedLinear::ApplyFrozen(p, w, x), y.detach()));
  }
  at::Tensor dy = at::randn(y.sizes());
  y.backward(dy);
  at::Tensor want = at::mm(dy.reshape({-1, 96}).to(at::kDouble), w.to(at::kDouble)).view({2, 35, 40});
  EXPECT_LT((x.grad().to(at::kDouble) - want).abs().max().item<double>(), 1e-4);
  EXPECT_FALSE(w.grad().defined());
  EXPECT_THROW(PackedLinear::ApplyFrozen(p, w.t(), x), std::invalid_argument);
}

TEST(PackedLinear, HoldsACopyOfTheWeight) {
  if (!PackedLinear::Available()) GTEST_SKIP() << "no libxsmm kernels in this build or on this CPU";
  at::Tensor w = at::randn({32, 8}), x = at::randn({2, 8});
  PackedLinear p(w);
  at::Tensor before = p.Apply(x);
  w.mul_(2);
  EXPECT_TRUE(at::equal(p.Apply(x), before));
}

TEST(PackedLinear, RefusesOtherDtypesAndShapes) {
  EXPECT_THROW(PackedLinear(at::randn({4, 4}, at::kDouble)), std::invalid_argument);
  EXPECT_THROW(PackedLinear(at::randn({4})), std::invalid_argument);
  if (!PackedLinear::Available()) return;
  PackedLinear p(at::randn({32, 8}));
  EXPECT_THROW(p.Apply(at::randn({2, 9})), std::invalid_argument);
  EXPECT_THROW(p.Apply(at::randn({2, 8}, at::kDouble)), std::invalid_argument);
}

}  // namespace
}  // namespace openrl::model
