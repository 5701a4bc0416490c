// The weights a Transformer holds: q|k|v and gate|up live in one fused tensor per layer, so the
// fused projections of training and inference read the parameters in place. The only copies are
// fp32 CPU decode weights (PackedLinear's blocked layout, or transposed weights without it); half
// precision holds none. Training writes through the views, and the next inference sees it.
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <map>

#include "openrl/model/test_models.h"
#include "openrl/model/transformer.h"

namespace openrl::model {
namespace {

using testing::TinyConfig;

ForwardArgs Args(const at::Tensor& ids, KvCache* cache = nullptr) {
  ForwardArgs a;
  a.input_ids = ids;
  a.cache = cache;
  return a;
}

int64_t ExpectedParameterBytes(const Transformer& m) {
  int64_t n = 0;
  for (const auto& [name, shape] : m.ExpectedTensors()) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    n += numel;
  }
  return n * static_cast<int64_t>(c10::elementSize(m.dtype()));
}

// Bytes of the weights a decode step multiplies by: every layer's seven projections and the head.
int64_t ProjectionBytes(const Transformer& m) {
  const ModelConfig& c = m.config();
  int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  int64_t layer = (q + 2 * kv) * c.hidden_size + c.hidden_size * q + 3 * c.intermediate_size * c.hidden_size;
  return (c.num_hidden_layers * layer + c.vocab_size * c.hidden_size) *
         static_cast<int64_t>(c10::elementSize(m.dtype()));
}

// Runs every path that makes inference forms of the weights: a forward under autograd over the
// frozen base (LoRA training), a prefill without grad, and decode steps.
at::Tensor ExerciseAllPaths(const Transformer& m) {
  at::Tensor ids = at::tensor(std::vector<int64_t>{4, 8, 15, 16, 23, 42}).view({2, 3});
  {
    c10::AutoGradMode grad(true);
    at::Tensor h = m.Hidden(Args(ids));
    (void)m.TargetLogprobs(h, ids.remainder(50));
  }
  at::NoGradGuard ng;
  KvCache cache(m.config(), 2, 8, m.dtype(), m.device());
  std::vector<at::Tensor> logits = {m.Logits(m.Hidden(Args(ids, &cache)))};
  for (int64_t t : {7, 9}) {
    at::Tensor step = at::full({2, 1}, t, at::kLong);
    logits.push_back(m.Logits(m.Hidden(Args(step, &cache))));
  }
  return at::cat(logits, 1);
}

class WeightMemoryTest : public ::testing::TestWithParam<Family> {};

TEST_P(WeightMemoryTest, HalfPrecisionHoldsOnlyItsParameters) {
  auto m = Transformer::Init(TinyConfig(GetParam()), at::kBFloat16, at::kCPU, 3);
  EXPECT_EQ(m->WeightBytes().parameters, ExpectedParameterBytes(*m));
  (void)ExerciseAllPaths(*m);
  Transformer::WeightMemory w = m->WeightBytes();
  EXPECT_EQ(w.parameters, ExpectedParameterBytes(*m));
  EXPECT_EQ(w.copies, 0);
}

TEST_P(WeightMemoryTest, Fp32CopiesOnlyTheDecodeWeightsOnce) {
  auto m = Transformer::Init(TinyConfig(GetParam()), at::kFloat, at::kCPU, 3);
  EXPECT_EQ(m->WeightBytes().copies, 0);
  (void)ExerciseAllPaths(*m);
  (void)ExerciseAllPaths(*m);  // a second round makes nothing new
  Transformer::WeightMemory w = m->WeightBytes();
  EXPECT_EQ(w.parameters, ExpectedParameterBytes(*m));
  // One blocked copy per projection and the head for decode steps (or, without PackedLinear, one
  // transposed copy each); prefill and training read the parameters in place.
  EXPECT_EQ(w.copies, ProjectionBytes(*m));
}

TEST_P(WeightMemoryTest, LoadedWeightsAreTheOnesGiven) {
  auto src = Transformer::Init(TinyConfig(GetParam()), at::kFloat, at::kCPU, 11);
  std::map<std::string, at::Tensor> given;
  for (auto& [name, t] : src->NamedParameters()) given[name] = t.clone();
  auto m = Transformer::Load(
      src->config(), [&](const std::string& name) -> Result<at::Tensor> { return given.at(name); },
      at::kFloat, at::kCPU);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  for (auto& [name, t] : (*m)->NamedParameters()) EXPECT_TRUE(at::equal(t, given.at(name))) << name;
  EXPECT_TRUE(at::equal(ExerciseAllPaths(**m), ExerciseAllPaths(*src)));
}

// Full fine-tuning: every projection its own parameter with its own gradient, updated in place;
// the fused inference forms made before the update are dropped, so inference afterwards equals a
// model loaded from the updated weights.
TEST_P(WeightMemoryTest, TrainingThroughTheViewsReachesInference) {
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    auto m = Transformer::Init(TinyConfig(GetParam()), dtype, at::kCPU, 5);
    at::Tensor before = ExerciseAllPaths(*m);
    m->SetRequiresGrad(true);
    at::Tensor ids = at::tensor(std::vector<int64_t>{3, 1, 4, 1, 5, 9, 2, 6}).view({2, 4});
    m->TargetLogprobs(m->Hidden(Args(ids)), ids.remainder(40)).sum().backward();
    {
      at::NoGradGuard ng;
      for (auto& [name, p] : m->NamedParameters()) {
        ASSERT_TRUE(p.grad().defined()) << name;
        EXPECT_EQ(p.grad().sizes(), p.sizes()) << name;
        p.sub_(p.grad() * 0.5);
      }
    }
    m->SetRequiresGrad(false);
    std::map<std::string, at::Tensor> updated;
    for (auto& [name, t] : m->NamedParameters()) updated[name] = t.detach().clone();
    auto fresh = Transformer::Load(
        m->config(), [&](const std::string& name) -> Result<at::Tensor> { return updated.at(name); }, dtype,
        at::kCPU);
    ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
    at::Tensor after = ExerciseAllPaths(*m);
    EXPECT_FALSE(at::equal(after, before)) << "the update changed nothing";
    EXPECT_TRUE(at::equal(after, ExerciseAllPaths(**fresh))) << c10::toString(dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, WeightMemoryTest,
                         ::testing::Values(Family::kLlama, Family::kQwen3, Family::kGemma3),
                         [](const auto& info) { return std::string(FamilyName(info.param)); });

}  // namespace
}  // namespace openrl::model
