// Tinker's built-in losses against formulas written out here independently: each loss's value and
// its gradient w.r.t. the policy logprobs come from a per-token case analysis in float64, not from
// the clamp/min/detach the implementation uses. Plus config and input validation.
#include "openrl/engine/losses.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace openrl::engine {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kT = 37;

struct Rollout {
  at::Tensor lp;          // (T,) current policy, fp32
  at::Tensor sampler_lp;  // (T,) fp32
  at::Tensor adv;         // (T,) fp32
  at::Tensor weights;     // (T,) fp32, some zeros
  at::Tensor seq_mask;    // (T,) fp32, about half ones: gspo's sequence_ratio_mask
};

Rollout RandomRollout(uint64_t seed) {
  at::manual_seed(seed);
  Rollout r;
  r.lp = -3 * at::rand({kT});
  // Ratios exp(lp - q) spread over about [0.4, 2.5]: both clip sides are exercised.
  r.sampler_lp = r.lp + 0.45 * at::randn({kT});
  r.adv = at::randn({kT});
  r.weights = at::rand({kT}) * (at::rand({kT}) > 0.25).to(at::kFloat);
  r.seq_mask = (at::rand({kT}) > 0.5).to(at::kFloat);
  return r;
}

// The reference: per-token loss and d(loss)/d(lp), float64.
struct Reference {
  at::Tensor terms;
  at::Tensor grad;
};

Reference Expected(const std::string& loss, const Rollout& r, double lo, double hi, double beta) {
  const at::Tensor lp = r.lp.to(at::kDouble), q = r.sampler_lp.to(at::kDouble);
  const at::Tensor a = r.adv.to(at::kDouble), w = r.weights.to(at::kDouble);
  const at::Tensor ratio = at::exp(lp - q);
  at::Tensor terms, grad;
  if (loss == "cross_entropy") {
    terms = -lp;
    grad = -at::ones_like(lp);
  } else if (loss == "importance_sampling") {
    terms = -ratio * a;
    grad = -ratio * a;
  } else if (loss == "ppo" || loss == "gspo") {
    // PPO clips each token's ratio; GSPO one ratio for the sequence, s = exp(mean of log(p/q) over
    // the masked tokens), carried by every token with its own logprob's derivative (d s_t / d lp_t
    // = s). A ≥ 0: the objective is A·min(r, hi), flat once r passes hi; A < 0: A·max(r, lo), flat
    // below lo.
    at::Tensor rt = ratio;
    if (loss == "gspo") {
      const at::Tensor m = r.seq_mask.to(at::kDouble);
      rt = at::full_like(lp, std::exp(((lp - q) * m).sum().item<double>() / m.sum().item<double>()));
    }
    const at::Tensor pos = a >= 0;
    const at::Tensor objective_ratio =
        at::where(pos, at::minimum(rt, at::full_like(rt, hi)), at::maximum(rt, at::full_like(rt, lo)));
    terms = -objective_ratio * a;
    const at::Tensor live = at::logical_or(at::logical_and(pos, rt < hi), at::logical_and(~pos, rt > lo));
    grad = -live.to(at::kDouble) * rt * a;
  } else if (loss == "cispo") {
    const at::Tensor coef = at::where(ratio < lo, at::full_like(ratio, lo),
                                      at::where(ratio > hi, at::full_like(ratio, hi), ratio));
    terms = -coef * lp * a;
    grad = -coef * a;
  } else {  // dro
    terms = -(lp * a - 0.5 * beta * (lp - q) * (lp - q));
    grad = -(a - beta * (lp - q));
  }
  return {terms * w, grad * w};
}

void ExpectClose(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  const at::Tensor g = got.to(at::kDouble), e = want.to(at::kDouble);
  ASSERT_EQ(g.sizes(), e.sizes()) << what;
  const double err = (g - e).abs().max().item<double>();
  const double scale = 1 + e.abs().max().item<double>();
  EXPECT_LE(err, 1e-5 * scale) << what << ": max error " << err;
}

struct LossCase {
  std::string name;
  std::map<std::string, double> config;
  double lo = 0, hi = 0, beta = 0;  // what the reference uses (the defaults when config is empty)
};

class LossValueTest : public ::testing::TestWithParam<LossCase> {};

TEST_P(LossValueTest, ValueAndGradientMatchTheFormula) {
  const LossCase& c = GetParam();
  auto spec = LossSpec::Make(c.name, c.config);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  for (uint64_t seed : {1, 2, 3}) {
    Rollout r = RandomRollout(seed);
    at::Tensor lp = r.lp.clone().requires_grad_(true);
    std::map<std::string, at::Tensor> inputs = {{"weights", r.weights}};
    if (c.name != "cross_entropy") {
      inputs["logprobs"] = r.sampler_lp;
      inputs["advantages"] = r.adv;
    }
    if (c.name == "gspo") inputs["sequence_ratio_mask"] = r.seq_mask;
    auto out = ComputeDatumLoss(*spec, lp, inputs, 0);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    out->loss.backward();
    Reference ref = Expected(c.name, r, c.lo, c.hi, c.beta);
    const std::string what = c.name + " seed " + std::to_string(seed);
    ExpectClose(out->loss, ref.terms.sum(), what + " loss");
    ExpectClose(lp.grad(), ref.grad, what + " gradient");
    ASSERT_EQ(out->outputs.size(), 1u);
    EXPECT_EQ(out->outputs[0].first, "elementwise_loss");
    EXPECT_FALSE(out->outputs[0].second.requires_grad());
    ExpectClose(out->outputs[0].second, ref.terms, what + " elementwise_loss");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Losses, LossValueTest,
    ::testing::Values(
        LossCase{"cross_entropy", {}}, LossCase{"importance_sampling", {}}, LossCase{"ppo", {}, 0.8, 1.2},
        LossCase{"ppo", {{"clip_high_threshold", 1.28}}, 0.8, 1.28}, LossCase{"cispo", {}, 0.0, 4.0},
        LossCase{"cispo", {{"clip_low_threshold", 0.8}, {"clip_high_threshold", 1.2}}, 0.8, 1.2},
        LossCase{"dro", {{"beta", 0.05}}, 0, 0, 0.05}, LossCase{"dro", {{"beta", 1.5}}, 0, 0, 1.5},
        LossCase{"gspo", {}, 0.8, 1.2},
        // Bounds close around 1: the sequence ratio (about exp(±0.1) here) is clipped on one side.
        LossCase{"gspo", {{"clip_low_threshold", 0.99}, {"clip_high_threshold", 1.01}}, 0.99, 1.01}),
    [](const auto& info) { return info.param.name + "_" + std::to_string(info.index); });

TEST(LossMathTest, RandomRolloutExercisesBothClipSides) {
  // Guards the PPO/CISPO cases above against passing without any token clipped.
  for (uint64_t seed : {1, 2, 3}) {
    Rollout r = RandomRollout(seed);
    at::Tensor ratio = at::exp(r.lp - r.sampler_lp);
    EXPECT_GT((ratio < 0.8).logical_and(r.adv < 0).sum().item<int64_t>(), 0) << seed;
    EXPECT_GT((ratio > 1.2).logical_and(r.adv > 0).sum().item<int64_t>(), 0) << seed;
  }
}

TEST(LossMathTest, AbsentWeightsCountEveryToken) {
  Rollout r = RandomRollout(7);
  auto spec = LossSpec::Make("ppo", {});
  ASSERT_TRUE(spec.ok());
  auto without = ComputeDatumLoss(*spec, r.lp, {{"logprobs", r.sampler_lp}, {"advantages", r.adv}}, 0);
  auto ones = ComputeDatumLoss(
      *spec, r.lp, {{"logprobs", r.sampler_lp}, {"advantages", r.adv}, {"weights", at::ones({kT})}}, 0);
  ASSERT_TRUE(without.ok() && ones.ok());
  EXPECT_FLOAT_EQ(without->loss.item<float>(), ones->loss.item<float>());
  auto ce = ComputeDatumLoss(*LossSpec::Make("cross_entropy", {}), r.lp, {}, 0);
  ASSERT_TRUE(ce.ok());
  EXPECT_NEAR(ce->loss.item<double>(), -r.lp.sum().item<double>(), 1e-4);
}

TEST(LossMathTest, GspoSequenceRatioIsClippedForTheWholeSequence) {
  // Guards the tight-bounds GSPO case above: the sequence ratio falls outside [0.99, 1.01] for
  // these seeds, so the clip binds; and a mask marking no token is refused.
  for (uint64_t seed : {1, 2, 3}) {
    Rollout r = RandomRollout(seed);
    double s =
        std::exp(((r.lp - r.sampler_lp) * r.seq_mask).sum().item<double>() / r.seq_mask.sum().item<double>());
    EXPECT_TRUE(s < 0.99 || s > 1.01) << seed << ": " << s;
  }
  Rollout r = RandomRollout(4);
  auto none = ComputeDatumLoss(
      *LossSpec::Make("gspo", {}), r.lp,
      {{"logprobs", r.sampler_lp}, {"advantages", r.adv}, {"sequence_ratio_mask", at::zeros({kT})}}, 6);
  EXPECT_EQ(none.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(),
              HasSubstr("data[6].loss_fn_inputs.sequence_ratio_mask marks no token"));
}

TEST(LossMathTest, DroPenaltyIsMaskedByZeroWeights) {
  Rollout r = RandomRollout(8);
  at::Tensor w = at::zeros({kT});
  auto out =
      ComputeDatumLoss(*LossSpec::Make("dro", {{"beta", 0.1}}), r.lp,
                       {{"logprobs", r.sampler_lp}, {"advantages", at::zeros({kT})}, {"weights", w}}, 0);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->loss.item<float>(), 0.0f);
}

TEST(LossSpecTest, FillsTinkerDefaults) {
  auto ppo = LossSpec::Make("ppo", {});
  ASSERT_TRUE(ppo.ok());
  EXPECT_EQ(ppo->config,
            (std::map<std::string, double>{{"clip_high_threshold", 1.2}, {"clip_low_threshold", 0.8}}));
  auto cispo = LossSpec::Make("cispo", {{"clip_high_threshold", 5.0}});
  ASSERT_TRUE(cispo.ok());
  EXPECT_EQ(cispo->config,
            (std::map<std::string, double>{{"clip_high_threshold", 5.0}, {"clip_low_threshold", 0.0}}));
  auto is = LossSpec::Make("importance_sampling", {});
  ASSERT_TRUE(is.ok());
  EXPECT_TRUE(is->config.empty());
  EXPECT_EQ(LossSpec::Make("dro", {{"beta", 0.05}})->config.at("beta"), 0.05);
}

TEST(LossSpecTest, ListsInputs) {
  EXPECT_TRUE(LossSpec::Make("cross_entropy", {})->RequiredInputs().empty());
  EXPECT_EQ(LossSpec::Make("cross_entropy", {})->OptionalInputs(), std::vector<std::string>{"weights"});
  for (const char* rl : {"importance_sampling", "ppo", "cispo"}) {
    EXPECT_EQ(LossSpec::Make(rl, {})->RequiredInputs(), (std::vector<std::string>{"logprobs", "advantages"}))
        << rl;
    EXPECT_EQ(LossSpec::Make(rl, {})->OptionalInputs(), std::vector<std::string>{"weights"}) << rl;
  }
}

void ExpectInvalid(const Status& s, const std::string& needle) {
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr(needle));
}

TEST(LossSpecTest, RejectsBadNamesKeysAndValues) {
  ExpectInvalid(LossSpec::Make("reinforce", {}).status(), "unknown loss_fn 'reinforce'");
  EXPECT_EQ(LossSpec::Make("stable_reinforce", {}).status().code(), ErrorCode::kUnimplemented);
  ExpectInvalid(LossSpec::Make("ppo", {{"clip_eps", 0.2}}).status(), "loss_fn_config.clip_eps");
  ExpectInvalid(LossSpec::Make("importance_sampling", {{"beta", 0.1}}).status(), "loss_fn_config.beta");
  ExpectInvalid(LossSpec::Make("cross_entropy", {{"clip_low_threshold", 0.8}}).status(),
                "loss_fn_config.clip_low_threshold");
  // ε passed where the ratio bounds belong.
  ExpectInvalid(LossSpec::Make("ppo", {{"clip_low_threshold", 0.2}, {"clip_high_threshold", 0.2}}).status(),
                "loss_fn_config.clip_high_threshold");
  ExpectInvalid(LossSpec::Make("ppo", {{"clip_low_threshold", 1.2}}).status(),
                "loss_fn_config.clip_low_threshold");
  ExpectInvalid(LossSpec::Make("cispo", {{"clip_low_threshold", -0.1}}).status(),
                "loss_fn_config.clip_low_threshold");
  ExpectInvalid(LossSpec::Make("ppo", {{"clip_high_threshold", std::nan("")}}).status(),
                "loss_fn_config.clip_high_threshold must be finite");
  ExpectInvalid(LossSpec::Make("dro", {{"beta", -1}}).status(), "loss_fn_config.beta");
  ExpectInvalid(LossSpec::Make("dro", {}).status(), "requires loss_fn_config.beta");
}

class LossInputTest : public ::testing::Test {
 protected:
  Status Run(const std::map<std::string, at::Tensor>& inputs, int64_t datum = 3) {
    return ComputeDatumLoss(*LossSpec::Make("ppo", {}), at::zeros({7}), inputs, datum).status();
  }
  at::Tensor ok_ = at::zeros({7});
};

TEST_F(LossInputTest, NamesDatumAndFieldOnShapeError) {
  Status s = Run({{"logprobs", ok_}, {"advantages", at::zeros({5})}});
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "data[3].loss_fn_inputs.advantages has shape [5], expected [7]");
  ExpectInvalid(Run({{"logprobs", at::zeros({7, 1})}, {"advantages", ok_}}),
                "data[3].loss_fn_inputs.logprobs has shape [7, 1], expected [7]");
}

TEST_F(LossInputTest, RejectsMissingUnknownAndNonFloatInputs) {
  ExpectInvalid(Run({{"logprobs", ok_}}, 2), "data[2].loss_fn_inputs.advantages is missing");
  ExpectInvalid(Run({{"logprobs", ok_}, {"advantages", ok_}, {"mask", ok_}}), "data[3].loss_fn_inputs.mask");
  ExpectInvalid(Run({{"logprobs", ok_}, {"advantages", at::zeros({7}, at::kLong)}}),
                "data[3].loss_fn_inputs.advantages has dtype Long, expected float32");
  EXPECT_TRUE(
      Run({{"logprobs", ok_}, {"advantages", ok_}, {"target_tokens", at::zeros({7}, at::kLong)}}).ok());
}

TEST_F(LossInputTest, RejectsNonFiniteValues) {
  at::Tensor adv = at::zeros({7});
  adv[4] = std::numeric_limits<float>::quiet_NaN();
  ExpectInvalid(Run({{"logprobs", ok_}, {"advantages", adv}}, 1),
                "data[1].loss_fn_inputs.advantages[4] is nan");
  at::Tensor lp = at::zeros({7});
  lp[0] = -std::numeric_limits<float>::infinity();
  ExpectInvalid(Run({{"logprobs", lp}, {"advantages", ok_}}), "data[3].loss_fn_inputs.logprobs[0] is -inf");
  at::Tensor w = at::ones({7});
  w[6] = std::numeric_limits<float>::infinity();
  ExpectInvalid(Run({{"logprobs", ok_}, {"advantages", ok_}, {"weights", w}}),
                "loss_fn_inputs.weights[6] is inf");
}

// cross_entropy over K targets per position (top-K distillation): −Σ w·logp over (T, K), each
// entry its own term and gradient; the other losses refuse (T, K) log-probabilities.
TEST(SeveralTargets, CrossEntropySumsWeightedLogprobsOverEveryTarget) {
  at::manual_seed(11);
  at::Tensor lp = (-3 * at::rand({5, 4})).requires_grad_(true);
  at::Tensor w = at::rand({5, 4});
  w[1][3] = 0.0;
  auto out = ComputeDatumLoss(*LossSpec::Make("cross_entropy", {}), lp, {{"weights", w}}, 0);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_NEAR(out->loss.item<double>(), -(lp * w).sum().item<double>(), 1e-5);
  ASSERT_EQ(out->outputs[0].second.sizes(), lp.sizes());  // elementwise_loss (T, K)
  out->loss.backward();
  EXPECT_TRUE(at::allclose(lp.grad(), -w));
  at::Tensor wrong = at::rand({5});
  EXPECT_EQ(
      ComputeDatumLoss(*LossSpec::Make("cross_entropy", {}), lp, {{"weights", wrong}}, 2).status().message(),
      "data[2].loss_fn_inputs.weights has shape [5], expected [5, 4]");
  auto ppo = ComputeDatumLoss(*LossSpec::Make("ppo", {}), lp.detach(),
                              {{"logprobs", at::zeros({5})}, {"advantages", at::zeros({5})}}, 1);
  EXPECT_EQ(ppo.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(ppo.status().message(), HasSubstr("data[1].loss_fn_inputs.target_tokens has shape [5, 4]"));
  EXPECT_THAT(ppo.status().message(), HasSubstr("cross_entropy only"));
}

}  // namespace
}  // namespace openrl::engine
