// Engine invariants on a tiny random model: batching rows with different adapters gives what
// each adapter gives alone; KV-cache decoding matches a full forward; optimizer state restores
// bit for bit; activation checkpointing leaves gradients unchanged.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstdlib>
#include <iostream>

#include <map>

#include "openrl/engine/forward.h"
#include "openrl/engine/optimizer.h"
#include "openrl/engine/sampler.h"
#include "openrl/engine/trainer.h"
#include "openrl/model/test_models.h"
#include "openrl/model/transformer.h"

namespace openrl::engine {
namespace {

using model::testing::CountOps;
using model::testing::RandomAdapter;
using model::testing::TinyConfig;

class EngineTest : public ::testing::TestWithParam<model::Family> {};

TEST_P(EngineTest, MixedAdapterBatchEqualsSeparateRuns) {
  auto cfg = TinyConfig(GetParam());
  auto m = model::Transformer::Init(cfg, at::kFloat, at::kCPU, 1);
  auto a1 = RandomAdapter(cfg, 11), a2 = RandomAdapter(cfg, 22);
  std::vector<SampleRequest> mixed;
  std::vector<std::vector<int32_t>> prompts = {{5, 6, 7}, {8, 9, 10, 11, 12, 13}, {3, 4}, {20, 21, 22, 23}};
  const model::LoraAdapter* adapters[] = {a1.get(), a2.get(), nullptr, a1.get()};
  for (size_t i = 0; i < prompts.size(); ++i) {
    SampleRequest r{prompts[i], {}, adapters[i]};
    r.params.max_tokens = 10;
    r.params.temperature = 0;
    r.params.top_logprobs = 2;
    mixed.push_back(r);
  }
  auto together = Generate(*m, mixed);
  ASSERT_TRUE(together.ok()) << together.status().ToString();
  for (size_t i = 0; i < mixed.size(); ++i) {
    auto alone = Generate(*m, {mixed[i]});
    ASSERT_TRUE(alone.ok());
    EXPECT_EQ((*together)[i].tokens, (*alone)[0].tokens) << "row " << i;
    for (size_t t = 0; t < (*alone)[0].logprobs.size(); ++t)
      EXPECT_NEAR((*together)[i].logprobs[t], (*alone)[0].logprobs[t], 1e-4);
  }
  // The adapters really differ from each other and from the base.
  EXPECT_NE((*together)[0].logprobs, (*Generate(*m, {{prompts[0], mixed[0].params, nullptr}}))[0].logprobs);
}

// Cancellation: rows taken out between steps free their slots; the others (of several adapters,
// greedy and seeded) finish exactly as they would alone, and a batch emptied by it is reusable.
TEST_P(EngineTest, RemovedRowsLeaveTheOthersUnchanged) {
  auto cfg = TinyConfig(GetParam());
  auto m = model::Transformer::Init(cfg, at::kFloat, at::kCPU, 4);
  auto a1 = RandomAdapter(cfg, 41), a2 = RandomAdapter(cfg, 42);
  const model::LoraAdapter* adapters[] = {a1.get(), nullptr, a2.get(), a1.get(), a2.get()};
  auto request = [&](int64_t i) {
    std::vector<int32_t> prompt;
    for (int64_t t = 0; t < 3 + i; ++t) prompt.push_back(static_cast<int32_t>(5 + (i * 13 + t * 7) % 80));
    SampleRequest r{prompt, {}, adapters[i]};
    r.params.max_tokens = 10;
    r.params.temperature = i % 2 == 0 ? 0.0 : 0.8;
    r.params.seed = 7 + static_cast<uint64_t>(i);
    return r;
  };
  GenerationBatch batch(*m);
  std::vector<SampleRequest> reqs;
  for (int64_t i = 0; i < 5; ++i) reqs.push_back(request(i));
  auto tickets = batch.Add(reqs);
  ASSERT_TRUE(tickets.ok());
  std::map<int64_t, SampleResult> got;
  for (int step = 0; step < 3; ++step) {
    auto done = batch.Step();
    ASSERT_TRUE(done.ok());
    ASSERT_TRUE(done->empty());
  }
  // Requests 1 and 3 are cancelled (a base-only row and one sharing its adapter with request 0).
  ASSERT_TRUE(batch.Remove({(*tickets)[1], (*tickets)[3], 12345}).ok());
  EXPECT_EQ(batch.rows(), 3);
  while (!batch.empty()) {
    auto done = batch.Step();
    ASSERT_TRUE(done.ok());
    for (auto& [ticket, res] : *done) got[ticket] = std::move(res);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_FALSE(got.count((*tickets)[1]) || got.count((*tickets)[3]));
  for (int64_t i : {0, 2, 4}) {
    auto alone = Generate(*m, {request(i)});
    ASSERT_TRUE(alone.ok());
    const SampleResult& r = got.at((*tickets)[static_cast<size_t>(i)]);
    EXPECT_EQ(r.tokens, (*alone)[0].tokens) << "request " << i;
    ASSERT_EQ(r.logprobs.size(), (*alone)[0].logprobs.size());
    for (size_t t = 0; t < r.logprobs.size(); ++t) EXPECT_NEAR(r.logprobs[t], (*alone)[0].logprobs[t], 1e-4);
  }
  // Everything removed: the batch is empty and takes newcomers again.
  auto more = batch.Add({request(0), request(1)});
  ASSERT_TRUE(more.ok());
  ASSERT_TRUE(batch.Remove(*more).ok());
  EXPECT_TRUE(batch.empty());
  auto again = batch.Add({request(2)});
  ASSERT_TRUE(again.ok());
  while (!batch.empty()) ASSERT_TRUE(batch.Step().ok());
}

// Continuous batching: requests that join a running generation (with shorter and longer prompts
// than what it has decoded so far, with and without adapters), and rows that come and go for long
// enough that the cache drops its unused left slots, each give what they give alone.
TEST_P(EngineTest, RowsJoiningMidGenerationMatchSoloRuns) {
  auto cfg = TinyConfig(GetParam());
  auto m = model::Transformer::Init(cfg, at::kFloat, at::kCPU, 3);
  auto a1 = RandomAdapter(cfg, 31), a2 = RandomAdapter(cfg, 32);
  const model::LoraAdapter* adapters[] = {nullptr, a1.get(), a2.get()};
  auto request = [&](int64_t i) {
    std::vector<int32_t> prompt;
    int64_t n = 2 + (i * 7) % 13;  // 2..14 tokens
    for (int64_t t = 0; t < n; ++t) prompt.push_back(static_cast<int32_t>(1 + (i * 31 + t * 17) % 90));
    SampleRequest r{prompt, {}, adapters[i % 3]};
    r.params.max_tokens = 4 + (i * 5) % 9;
    r.params.temperature = i % 2 == 0 ? 0.0 : 0.9;
    r.params.seed = 100 + static_cast<uint64_t>(i);
    r.params.prompt_logprobs = i % 4 == 1;
    return r;
  };
  GenerationBatch batch(*m);
  std::map<int64_t, int64_t> request_of;  // ticket → request index
  std::map<int64_t, SampleResult> got;
  int64_t next = 0;
  for (int64_t step = 0; step < 200 && (next < 24 || !batch.empty()); ++step) {
    if (next < 24 && step % 2 == 0) {  // one or two newcomers every other step
      std::vector<SampleRequest> newcomers = {request(next)};
      if (next % 3 == 0) newcomers.push_back(request(next + 1));
      auto tickets = batch.Add(newcomers);
      ASSERT_TRUE(tickets.ok()) << tickets.status().ToString();
      for (int64_t t : *tickets) request_of[t] = next++;
    }
    auto done = batch.Step();
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    for (auto& [ticket, res] : *done) got[request_of.at(ticket)] = std::move(res);
  }
  ASSERT_EQ(static_cast<int64_t>(got.size()), next);
  for (int64_t i = 0; i < next; ++i) {
    auto alone = Generate(*m, {request(i)});
    ASSERT_TRUE(alone.ok());
    const SampleResult& want = (*alone)[0];
    EXPECT_EQ(got[i].tokens, want.tokens) << "request " << i;
    EXPECT_EQ(got[i].finish_reason, want.finish_reason) << "request " << i;
    ASSERT_EQ(got[i].logprobs.size(), want.logprobs.size());
    for (size_t t = 0; t < want.logprobs.size(); ++t) EXPECT_NEAR(got[i].logprobs[t], want.logprobs[t], 1e-4);
    ASSERT_EQ(got[i].prompt_logprobs.size(), want.prompt_logprobs.size());
    for (size_t t = 1; t < want.prompt_logprobs.size(); ++t)
      EXPECT_NEAR(*got[i].prompt_logprobs[t], *want.prompt_logprobs[t], 1e-4);
  }
  // A bad newcomer is refused with its index, and nothing of it joins.
  SampleRequest bad = request(0);
  bad.prompt.push_back(static_cast<int32_t>(cfg.vocab_size));
  auto refused = batch.Add({request(1), bad});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("request 1: prompt token 97"), std::string::npos)
      << refused.status().message();
  EXPECT_TRUE(batch.empty());
}

// The fused decode step (fp32 on CPU, decode_kernels.h) gives what the layer-by-layer ATen path
// gives (OPENRL_FUSED_DECODE=0): the same tokens and logprobs within 1e-5 over a batch with left
// padding, adapters on some rows, greedy and seeded rows, Gemma's sliding window, and a head size
// (40) that takes the kernels' vector loops and their tails. It issues far fewer ATen ops.
TEST_P(EngineTest, FusedDecodeStepEqualsLayerPath) {
  auto cfg = TinyConfig(GetParam());
  cfg.head_dim = 40;
  auto m = model::Transformer::Init(cfg, at::kFloat, at::kCPU, 5);
  auto a1 = RandomAdapter(cfg, 51);
  std::vector<SampleRequest> reqs;
  for (int32_t i = 0; i < 4; ++i) {
    std::vector<int32_t> prompt;
    for (int32_t t = 0; t < 2 + 3 * i; ++t) prompt.push_back(1 + (i * 29 + t * 13) % 90);
    SampleRequest r{prompt, {}, i % 2 == 1 ? a1.get() : nullptr};
    r.params.max_tokens = 12;
    r.params.temperature = i == 3 ? 0.8 : 0.0;
    r.params.seed = 7;
    r.params.top_logprobs = 2;
    reqs.push_back(r);
  }
  ASSERT_EQ(setenv("OPENRL_FUSED_DECODE", "0", 1), 0);
  auto layered = Generate(*m, reqs);
  ASSERT_EQ(unsetenv("OPENRL_FUSED_DECODE"), 0);
  auto fused = Generate(*m, reqs);
  ASSERT_TRUE(layered.ok()) << layered.status().ToString();
  ASSERT_TRUE(fused.ok()) << fused.status().ToString();
  for (size_t i = 0; i < reqs.size(); ++i) {
    const SampleResult &want = (*layered)[i], &got = (*fused)[i];
    EXPECT_EQ(got.tokens, want.tokens) << "row " << i;
    ASSERT_EQ(got.logprobs.size(), want.logprobs.size());
    for (size_t t = 0; t < want.logprobs.size(); ++t)
      EXPECT_NEAR(got.logprobs[t], want.logprobs[t], 1e-5) << "row " << i << " token " << t;
  }
  // One decode step of two rows after a two-token prefill.
  at::NoGradGuard ng;
  auto step_ops = [&](bool fused_on) {
    model::KvCache cache(cfg, 2, 8, at::kFloat, at::kCPU);
    (void)m->Hidden({at::tensor(std::vector<int64_t>{4, 8, 15, 16}).view({2, 2}), {}, {}, &cache});
    if (!fused_on) setenv("OPENRL_FUSED_DECODE", "0", 1);
    int64_t n = CountOps([&] {
      (void)m->Hidden({at::tensor(std::vector<int64_t>{23, 42}).view({2, 1}), {}, {}, &cache});
    });
    unsetenv("OPENRL_FUSED_DECODE");
    return n;
  };
  int64_t layered_ops = step_ops(false), fused_ops = step_ops(true);
  std::cout << "ATen ops of one decode step, 2 layers: layer path " << layered_ops << ", fused " << fused_ops
            << "\n";
  EXPECT_LT(fused_ops, layered_ops / 2);
}

TEST_P(EngineTest, CachedDecodingMatchesFullForward) {
  auto cfg = TinyConfig(GetParam());
  auto m = model::Transformer::Init(cfg, at::kFloat, at::kCPU, 2);
  at::NoGradGuard ng;
  std::vector<int64_t> ids = {4, 8, 15, 16, 23, 42, 7, 9, 11};
  at::Tensor full = m->Logits(m->Hidden({at::tensor(ids).view({1, -1})}));
  model::KvCache cache(cfg, 1, 16, at::kFloat, at::kCPU);
  std::vector<int64_t> prefix(ids.begin(), ids.begin() + 3);
  model::ForwardArgs pre{at::tensor(prefix).view({1, -1}), {}, {}, &cache};
  at::Tensor got = m->Logits(m->Hidden(pre));
  EXPECT_LT((got[0] - full[0].narrow(0, 0, 3)).abs().max().item<float>(), 1e-5);
  for (size_t t = 3; t < ids.size(); ++t) {
    model::ForwardArgs step{at::tensor(std::vector<int64_t>{ids[t]}).view({1, 1}), {}, {}, &cache};
    at::Tensor l = m->Logits(m->Hidden(step));
    EXPECT_LT((l[0][0] - full[0][t]).abs().max().item<float>(), 1e-5) << "position " << t;
  }
}

// A half-precision model on CPU keeps its cache in fp32 and decodes in fp32 attention: each
// decode step's logits track the model's own full forward (half-precision attention) within
// half-precision noise.
TEST_P(EngineTest, HalfPrecisionCachedDecodingTracksFullForward) {
  auto cfg = TinyConfig(GetParam());
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    auto m = model::Transformer::Init(cfg, dtype, at::kCPU, 2);
    at::NoGradGuard ng;
    std::vector<int64_t> ids = {4, 8, 15, 16, 23, 42, 7, 9, 11, 60, 3};
    at::Tensor full = m->Logits(m->Hidden({at::tensor(ids).view({1, -1})}));
    model::KvCache cache(cfg, 1, 16, dtype, at::kCPU);
    EXPECT_EQ(cache.dtype(), at::kFloat);
    EXPECT_EQ(cache.keys(0).scalar_type(), at::kFloat);
    std::vector<int64_t> prefix(ids.begin(), ids.begin() + 3);
    model::ForwardArgs pre{at::tensor(prefix).view({1, -1}), {}, {}, &cache};
    at::Tensor got = m->Logits(m->Hidden(pre));
    // The prefill attends in the model's dtype over exactly cast-back values: the same logits.
    EXPECT_LT((got[0] - full[0].narrow(0, 0, 3)).abs().max().item<float>(), 1e-6) << c10::toString(dtype);
    double scale = full.abs().max().item<double>();
    for (size_t t = 3; t < ids.size(); ++t) {
      model::ForwardArgs step{at::tensor(std::vector<int64_t>{ids[t]}).view({1, 1}), {}, {}, &cache};
      at::Tensor l = m->Logits(m->Hidden(step));
      EXPECT_LT((l[0][0] - full[0][t]).abs().max().item<double>(), 0.02 * scale)
          << c10::toString(dtype) << " position " << t;
    }
    EXPECT_EQ(cache.length(), static_cast<int64_t>(ids.size()));
  }
}

TEST_P(EngineTest, CheckpointedLayersGiveSameGradients) {
  auto cfg = TinyConfig(GetParam());
  auto m = model::Transformer::Init(cfg, at::kFloat, at::kCPU, 3);
  auto a = RandomAdapter(cfg, 5);
  a->SetRequiresGrad(true);
  auto batch = MakeShiftedBatch({{1, 2, 3, 4, 5, 6, 7, 8}, {9, 10, 11, 12}}, cfg);
  ASSERT_TRUE(batch.ok());
  model::LoraBatch lora;
  lora.groups.push_back({a.get(), {}});
  std::vector<at::Tensor> grads[2];
  for (int ckpt = 0; ckpt < 2; ++ckpt) {
    at::Tensor loss = -TargetLogprobs(*m, *batch, &lora, ckpt == 1).sum();
    torch::autograd::backward({loss});
    for (auto& p : a->Parameters()) {
      grads[ckpt].push_back(p.grad().clone());
      p.mutable_grad() = at::Tensor();
    }
  }
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_TRUE(at::allclose(grads[0][i], grads[1][i], 1e-5, 1e-6)) << "tensor " << i;
}

TEST_P(EngineTest, LossFromCountsOnlyCompletionTokens) {
  auto cfg = TinyConfig(GetParam());
  auto m = model::Transformer::Init(cfg, at::kFloat, at::kCPU, 4);
  auto a = RandomAdapter(cfg, 6);
  std::vector<std::vector<int32_t>> rows = {{1, 2, 3, 4, 5, 6, 7, 8}, {9, 10, 11, 12}};
  // Reference: mean NLL of tokens 5.. of row 0 and 2.. of row 1, from the plain forward.
  auto batch = MakeShiftedBatch(rows, cfg);
  ASSERT_TRUE(batch.ok());
  model::LoraBatch lora;
  lora.groups.push_back({a.get(), {}});
  double want;
  {
    at::NoGradGuard ng;
    at::Tensor lp = TargetLogprobs(*m, *batch, &lora);
    want = -(lp[0].narrow(0, 4, 3).sum() + lp[1].narrow(0, 1, 2).sum()).item<double>() / 5.0;
  }
  Trainer trainer(*m, a.get(), {8, false, 0});
  auto rep = trainer.ForwardBackward(rows, {5, 2});
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->tokens, 5);
  EXPECT_NEAR(rep->loss, want, 1e-5);
  EXPECT_FALSE(trainer.ForwardBackward(rows, {5}).ok());  // one entry per row
  EXPECT_FALSE(trainer.ForwardBackward(rows, {8, 4}).ok());  // nothing left to learn
}

INSTANTIATE_TEST_SUITE_P(Families, EngineTest,
                         ::testing::Values(model::Family::kLlama, model::Family::kQwen3, model::Family::kGemma3));

TEST(AdamWTest, StateRoundTripIsBitIdentical) {
  at::manual_seed(0);
  at::Tensor w1 = at::randn({5, 3}), w2 = w1.clone();
  AdamW opt1({w1}), opt2({w2});
  AdamParams hp{1e-2, 0.9, 0.95, 1e-8, 0.1, 1.0};
  for (int s = 0; s < 3; ++s) {
    w1.mutable_grad() = at::randn({5, 3});
    ASSERT_TRUE(opt1.Step(hp).ok());
  }
  w2.detach().copy_(w1.detach());
  ASSERT_TRUE(opt2.LoadState(opt1.StateTensors()).ok());
  at::Tensor g = at::randn({5, 3});
  w1.mutable_grad() = g.clone();
  w2.mutable_grad() = g.clone();
  ASSERT_TRUE(opt1.Step(hp).ok());
  ASSERT_TRUE(opt2.Step(hp).ok());
  EXPECT_TRUE(at::equal(w1, w2));
  EXPECT_EQ(opt2.steps(), 4);
}

TEST(AdamWTest, IncompleteStateIsRefusedAndChangesNothing) {
  at::Tensor w = at::randn({3});
  AdamW opt({w});
  w.mutable_grad() = at::ones({3});
  ASSERT_TRUE(opt.Step({}).ok());
  auto before = opt.StateTensors();
  std::vector<at::Tensor> saved;
  for (auto& [name, t] : before) saved.push_back(t.clone());
  std::vector<std::pair<std::string, at::Tensor>> partial = {{"exp_avg.0", at::full({3}, 7.0)}};
  auto st = opt.LoadState(partial);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("exp_avg_sq.0"), std::string::npos) << st.message();
  auto after = opt.StateTensors();
  for (size_t i = 0; i < saved.size(); ++i) EXPECT_TRUE(at::equal(saved[i], after[i].second)) << after[i].first;
}

TEST(AdamWTest, StepWithoutGradientsIsAFailedPrecondition) {
  at::Tensor w = at::zeros({2});
  AdamW opt({w});
  auto r = opt.Step({});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(at::equal(w, at::zeros({2})));
}

}  // namespace
}  // namespace openrl::engine
