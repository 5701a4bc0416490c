// LoraStack (all of a batch's adapters applied at once in inference) against the per-adapter,
// per-projection path it replaces: same logits for mixed batches (adapters of different ranks,
// targets and scales, rows without an adapter, a head adapter), rebuilt when an adapter changes in
// place, and far fewer ATen ops per decode step.
#include <gtest/gtest.h>
#include <c10/core/GradMode.h>

#include "openrl/model/lora.h"
#include "openrl/model/test_models.h"
#include "openrl/model/transformer.h"

namespace openrl::model {
namespace {

std::unique_ptr<LoraAdapter> Adapter(const ModelConfig& c, int64_t rank, double alpha, std::set<LinearKind> targets,
                                     bool rslora, uint64_t seed) {
  LoraConfig lc;
  lc.rank = rank;
  lc.alpha = alpha;
  lc.targets = std::move(targets);
  lc.use_rslora = rslora;
  return testing::RandomAdapter(c, seed, lc);
}

// The batch's groups as the sampler builds them (row indices per adapter; -1: no adapter).
LoraBatch Groups(const std::vector<const LoraAdapter*>& adapters, const std::vector<int64_t>& slots) {
  LoraBatch b;
  for (size_t s = 0; s < adapters.size(); ++s) {
    std::vector<int64_t> rows;
    for (size_t r = 0; r < slots.size(); ++r)
      if (slots[r] == static_cast<int64_t>(s)) rows.push_back(static_cast<int64_t>(r));
    LoraBatch::Group g{adapters[s], {}};
    if (rows.size() != slots.size()) g.rows = at::tensor(rows, at::kLong);
    b.groups.push_back(g);
  }
  return b;
}

at::Tensor Forward(const Transformer& m, const at::Tensor& ids, const LoraBatch& lora) {
  ForwardArgs args;
  args.input_ids = ids;
  args.lora = &lora;
  return m.Logits(m.Hidden(args), &lora);
}

// Equal up to fp32 rounding (the scale is folded into B, the adapters' sums are blocked differently).
void ExpectClose(const at::Tensor& got, const at::Tensor& want) {
  double tol = 1e-6 * std::max(10.0, want.abs().max().item<double>());
  EXPECT_LT((got - want).abs().max().item<double>(), tol);
}

class LoraStackTest : public ::testing::TestWithParam<Family> {};

TEST_P(LoraStackTest, MixedBatchMatchesPerAdapterPath) {
  c10::NoGradGuard no_grad;
  auto cfg = testing::TinyConfig(GetParam());
  auto m = Transformer::Init(cfg, at::kFloat, at::kCPU, 5);
  using K = LinearKind;
  auto a0 = Adapter(cfg, 4, 8, {K::kQ, K::kK, K::kV, K::kO, K::kGate, K::kUp, K::kDown}, false, 1);
  auto a1 = Adapter(cfg, 2, 16, {K::kQ, K::kV, K::kLmHead}, false, 2);  // partial targets, a head adapter
  auto a2 = Adapter(cfg, 3, 4, {K::kK, K::kO, K::kUp, K::kDown}, true, 3);  // rsLoRA scale
  std::vector<const LoraAdapter*> adapters = {a0.get(), a1.get(), a2.get()};
  at::manual_seed(9);
  at::Tensor ids = at::randint(3, cfg.vocab_size, {5, 6}, at::kLong);

  for (const std::vector<int64_t>& slots : std::vector<std::vector<int64_t>>{{0, 1, -1, 2, 0}, {2, 1, 0, 1, 2}}) {
    LoraBatch ref = Groups(adapters, slots);
    LoraStack stack(adapters, slots, at::kCPU);
    LoraBatch stacked = ref;
    stacked.stack = &stack;
    at::Tensor want = Forward(*m, ids, ref), got = Forward(*m, ids, stacked);
    ExpectClose(got, want);
    // The adapters do change the logits (the comparison is not of base outputs alone).
    LoraBatch none;
    EXPECT_GT((Forward(*m, ids, none) - want).abs().max().item<double>(), 1e-2);

    // An adapter updated in place (an optimizer step) is seen: the stack is rebuilt.
    a2->Find(0, K::kO)->b.add_(0.5);
    a1->Find(-1, K::kLmHead)->a.mul_(2.0);
    want = Forward(*m, ids, ref);
    got = Forward(*m, ids, stacked);
    ExpectClose(got, want);
  }

  // One adapter on every row (plain matmuls, no gather), and rows re-pointed without rebuilding.
  std::vector<const LoraAdapter*> one = {a0.get()};
  LoraStack stack(one, {0, 0, 0, 0, 0}, at::kCPU);
  LoraBatch ref = Groups(one, {0, 0, 0, 0, 0}), stacked = ref;
  stacked.stack = &stack;
  ExpectClose(Forward(*m, ids, stacked), Forward(*m, ids, ref));
  stack.SetRows({0, -1, 0, -1, 0});
  ref = Groups(one, {0, -1, 0, -1, 0});
  stacked = ref;
  stacked.stack = &stack;
  ExpectClose(Forward(*m, ids, stacked), Forward(*m, ids, ref));
}

TEST_P(LoraStackTest, Bf16BaseTracksPerAdapterPath) {
  c10::NoGradGuard no_grad;
  auto cfg = testing::TinyConfig(GetParam());
  auto m = Transformer::Init(cfg, at::kBFloat16, at::kCPU, 5);
  using K = LinearKind;
  auto a0 = Adapter(cfg, 4, 8, {K::kQ, K::kK, K::kV, K::kO, K::kGate, K::kUp, K::kDown}, false, 1);
  auto a1 = Adapter(cfg, 2, 16, {K::kQ, K::kV}, false, 2);
  std::vector<const LoraAdapter*> adapters = {a0.get(), a1.get()};
  std::vector<int64_t> slots = {0, 1, -1, 1};
  at::manual_seed(9);
  at::Tensor ids = at::randint(3, cfg.vocab_size, {4, 5}, at::kLong);
  LoraBatch ref = Groups(adapters, slots), stacked = ref;
  LoraStack stack(adapters, slots, at::kCPU);
  stacked.stack = &stack;
  at::Tensor want = Forward(*m, ids, ref), got = Forward(*m, ids, stacked);
  // Both add an fp32 adapter output to a bf16 projection; only fp32 rounding inside differs.
  EXPECT_LT((got - want).abs().max().item<double>(), 0.05 * want.abs().max().item<double>());
  EXPECT_GT((got.argmax(-1) == want.argmax(-1)).to(at::kFloat).mean().item<double>(), 0.9);
}

TEST_P(LoraStackTest, ManyAdaptersGatherAndMatchPerAdapterPath) {
  c10::NoGradGuard no_grad;
  auto cfg = testing::TinyConfig(GetParam());
  auto m = Transformer::Init(cfg, at::kFloat, at::kCPU, 5);
  using K = LinearKind;
  // More adapters than the one-hot form takes: each row's own A and B are gathered.
  std::vector<std::unique_ptr<LoraAdapter>> owned;
  std::vector<const LoraAdapter*> adapters;
  for (int64_t s = 0; s <= LoraStack::kOneHotMaxSlots; ++s) {
    std::set<K> targets =
        s % 2 ? std::set<K>{K::kQ, K::kV, K::kDown} : std::set<K>{K::kK, K::kO, K::kGate, K::kUp};
    owned.push_back(Adapter(cfg, 2 + s % 3, 8, targets, false, 20 + static_cast<uint64_t>(s)));
    adapters.push_back(owned.back().get());
  }
  const int64_t last = LoraStack::kOneHotMaxSlots;
  std::vector<int64_t> slots = {last, -1, 3, 0, last, 1};
  at::manual_seed(9);
  at::Tensor ids = at::randint(3, cfg.vocab_size, {6, 4}, at::kLong);
  LoraBatch ref = Groups(adapters, slots), stacked = ref;
  LoraStack stack(adapters, slots, at::kCPU);
  stacked.stack = &stack;
  ExpectClose(Forward(*m, ids, stacked), Forward(*m, ids, ref));
}

INSTANTIATE_TEST_SUITE_P(Families, LoraStackTest,
                         ::testing::Values(Family::kLlama, Family::kQwen3, Family::kGemma3),
                         [](const auto& info) { return std::string(FamilyName(info.param)); });

TEST(LoraStack, DecodeStepIssuesFewerOps) {
  c10::NoGradGuard no_grad;
  auto cfg = testing::TinyConfig(Family::kLlama);
  auto m = Transformer::Init(cfg, at::kFloat, at::kCPU, 5);
  using K = LinearKind;
  std::set<K> all = {K::kQ, K::kK, K::kV, K::kO, K::kGate, K::kUp, K::kDown};
  auto a0 = Adapter(cfg, 8, 16, all, false, 1), a1 = Adapter(cfg, 8, 16, all, false, 2),
       a2 = Adapter(cfg, 8, 16, all, false, 3);
  std::vector<const LoraAdapter*> adapters = {a0.get(), a1.get(), a2.get()};
  std::vector<int64_t> slots = {0, 1, 2, 0, 1, 2};
  at::Tensor ids = at::randint(3, cfg.vocab_size, {6, 1}, at::kLong);  // one decode step
  LoraBatch ref = Groups(adapters, slots), stacked = ref;
  LoraStack stack(adapters, slots, at::kCPU);
  stacked.stack = &stack;
  Forward(*m, ids, stacked);  // builds the stack once, as the first decode step does
  int64_t per_adapter = testing::CountOps([&] { Forward(*m, ids, ref); });
  int64_t at_once = testing::CountOps([&] { Forward(*m, ids, stacked); });
  int64_t base = testing::CountOps([&] {
    LoraBatch none;
    Forward(*m, ids, none);
  });
  std::cout << "ATen ops per decode step, 3 adapters over 6 rows, 2 layers: base alone " << base
            << ", per adapter " << per_adapter << ", stacked " << at_once << "\n";
  ASSERT_GT(base, 0);
  // The adapters' share of the ops: stacked, a fixed few per projection group, whatever the number
  // of adapters; per adapter, a cast, two matmuls, a scale, a cast and an add per projection and group.
  EXPECT_LT(at_once - base, (per_adapter - base) / 3);
}

}  // namespace
}  // namespace openrl::model
