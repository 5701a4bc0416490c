// Custom-loss graphs, written here as the tinker SDK encodes torch.fx traces (encode_graph), run
// against the same computation written directly in ATen: values, gradients w.r.t. logprobs, metrics.
// Plus validation: every refusal names the node and what is wrong with it.
#include "openrl/engine/custom_loss.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>

namespace openrl::engine {
namespace {

using ::testing::HasSubstr;

Json Ref(const std::string& name) { return {{"ref", name}}; }

Json Node(const std::string& op, const std::string& name, const std::string& target,
          Json args = Json::array(), Json kwargs = Json::object()) {
  return {{"op", op}, {"name", name}, {"target", target}, {"args", args}, {"kwargs", kwargs}};
}
Json Call(const std::string& name, const std::string& target, Json args, Json kwargs = Json::object()) {
  return Node("call_function", name, target, std::move(args), std::move(kwargs));
}
Json Method(const std::string& name, const std::string& target, Json args, Json kwargs = Json::object()) {
  return Node("call_method", name, target, std::move(args), std::move(kwargs));
}
Json Placeholder(const std::string& name) { return Node("placeholder", name, name); }
Json Output(const std::string& loss, Json metrics = Json::object()) {
  return Node("output", "output", "output",
              Json::array({{{"tuple", Json::array({Ref(loss), {{"dict", metrics}}})}}}));
}
Json Graph(std::vector<Json> nodes) { return {{"format", 1}, {"nodes", nodes}}; }

// def is_loss(logprobs, sampler_logprobs, advantages):
//     ratio = torch.exp(logprobs - sampler_logprobs)
//     clipped = torch.clamp(ratio, min=0.8, max=1.2)
//     loss = -torch.minimum(ratio * advantages, clipped * advantages).sum()
//     return loss, {"custom/ratio:mean": ratio.mean().detach(), "custom/n:sum": logprobs.shape[0] * 1.0}
Json PpoGraph() {
  return Graph({Placeholder("logprobs"), Placeholder("sampler_logprobs"), Placeholder("advantages"),
                Call("sub", "operator.sub", {Ref("logprobs"), Ref("sampler_logprobs")}),
                Call("exp", "torch.exp", {Ref("sub")}),
                Call("clamp", "torch.clamp", {Ref("exp")}, {{"min", 0.8}, {"max", 1.2}}),
                Call("mul", "operator.mul", {Ref("exp"), Ref("advantages")}),
                Call("mul_1", "operator.mul", {Ref("clamp"), Ref("advantages")}),
                Call("minimum", "torch.minimum", {Ref("mul"), Ref("mul_1")}),
                Method("sum_1", "sum", {Ref("minimum")}), Call("neg", "operator.neg", {Ref("sum_1")}),
                Method("mean", "mean", {Ref("exp")}), Method("detach", "detach", {Ref("mean")}),
                Call("getattr_1", "getattr", {Ref("logprobs"), "shape"}),
                Call("getitem", "operator.getitem", {Ref("getattr_1"), 0}),
                Call("mul_2", "operator.mul", {Ref("getitem"), 1.0}),
                Output("neg", {{"custom/ratio:mean", Ref("detach")}, {"custom/n:sum", Ref("mul_2")}})});
}
Json Inputs(std::vector<std::pair<std::string, int>> in) {
  Json j = Json::array();
  for (auto& [n, r] : in) j.push_back({{"name", n}, {"rank", r}});
  return j;
}
Json PpoInputs() { return Inputs({{"logprobs", 1}, {"sampler_logprobs", 1}, {"advantages", 1}}); }

TEST(CustomLoss, PpoGraphMatchesTheSameComputationInAtenWithItsGradientAndMetrics) {
  auto loss = CustomLoss::Parse("ppo_like", PpoInputs(), PpoGraph());
  ASSERT_TRUE(loss.ok()) << loss.status().message();
  at::manual_seed(3);
  const int64_t T = 23;
  at::Tensor lp = (-3 * at::rand({T})).requires_grad_(true);
  at::Tensor q = lp.detach() + 0.4 * at::randn({T});
  at::Tensor adv = at::randn({T});
  auto r =
      (*loss)->Evaluate(lp, {{"sampler_logprobs", q}, {"advantages", adv}, {"unused", at::ones({2, 2})}}, 0);
  ASSERT_TRUE(r.ok()) << r.status().message();
  at::Tensor grad = torch::autograd::grad({r->loss}, {lp})[0];

  at::Tensor lp2 = lp.detach().clone().requires_grad_(true);
  at::Tensor ratio = at::exp(lp2 - q);
  at::Tensor want = -at::minimum(ratio * adv, at::clamp(ratio, 0.8, 1.2) * adv).sum();
  at::Tensor want_grad = torch::autograd::grad({want}, {lp2})[0];
  EXPECT_EQ(r->loss.item<float>(), want.item<float>());  // the same ATen calls: bit for bit
  EXPECT_TRUE(at::equal(grad, want_grad));
  ASSERT_EQ(r->metrics.size(), 2u);  // by key
  EXPECT_EQ(r->metrics[0].first, "custom/n:sum");
  EXPECT_EQ(r->metrics[0].second, static_cast<double>(T));
  EXPECT_EQ(r->metrics[1].first, "custom/ratio:mean");
  EXPECT_FLOAT_EQ(r->metrics[1].second, ratio.mean().item<float>());
}

TEST(CustomLoss, PythonNumbersPromoteLikeTorchScalars) {
  // def f(logprobs, sign): return (0.1 * sign * logprobs.sum()), {}   with sign a float32 scalar
  auto loss = CustomLoss::Parse(
      "scaled", Inputs({{"logprobs", 1}, {"sign", 0}}),
      Graph({Placeholder("logprobs"), Placeholder("sign"), Call("mul", "operator.mul", {0.1, Ref("sign")}),
             Method("sum_1", "sum", {Ref("logprobs")}),
             Call("mul_1", "operator.mul", {Ref("mul"), Ref("sum_1")}), Output("mul_1")}));
  ASSERT_TRUE(loss.ok()) << loss.status().message();
  at::Tensor lp = at::tensor({-1.5f, -0.25f});
  auto r = (*loss)->Evaluate(lp, {{"sign", at::scalar_tensor(-1.0, at::kFloat)}}, 0);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->loss.scalar_type(), at::kFloat);  // a Python float does not widen float32 to float64
  EXPECT_FLOAT_EQ(r->loss.item<float>(), 0.175f);
}

TEST(CustomLoss, RefusalsNameTheNodeAndTheProblem) {
  auto refuse = [](const Json& inputs, const Json& graph) {
    auto r = CustomLoss::Parse("bad", inputs, graph);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  };
  const Json in = Inputs({{"logprobs", 1}});
  EXPECT_THAT(
      refuse(in, Graph({Placeholder("logprobs"), Call("fft", "torch.fft.fft", {Ref("logprobs")}),
                        Output("fft")})),
      HasSubstr("graph.nodes[1] 'fft': function 'torch.fft.fft' is not an operation this server runs"));
  EXPECT_THAT(
      refuse(in, Graph({Placeholder("logprobs"), Method("x", "add_", {Ref("logprobs"), 1}), Output("x")})),
      HasSubstr("graph.nodes[1] 'x': method 'add_' is not an operation"));
  EXPECT_THAT(refuse(in, Graph({Placeholder("logprobs"), Call("a", "torch.exp", {Ref("b")}),
                                Call("b", "torch.exp", {Ref("logprobs")}), Output("a")})),
              HasSubstr("graph.nodes[1] 'a'.args[0].ref refers to 'b', which is not an earlier node"));
  EXPECT_THAT(refuse(in, Graph({Placeholder("logprobs"), Node("get_attr", "w", "weight"), Output("w")})),
              HasSubstr("graph.nodes[1] 'w': op 'get_attr' is not allowed"));
  EXPECT_THAT(refuse(in, Graph({Placeholder("logprobs"), Call("e", "torch.exp", {2.0}), Output("e")})),
              HasSubstr("graph.nodes[1] 'e' (torch.exp) argument 'input' must be a tensor"));
  EXPECT_THAT(refuse(in, Graph({Placeholder("logprobs"),
                                Call("s", "torch.sum", {Ref("logprobs")}, {{"axis", 0}}), Output("s")})),
              HasSubstr("graph.nodes[1] 's' (torch.sum) has no parameter 'axis'"));
  EXPECT_THAT(
      refuse(in, Graph({Placeholder("logprobs"), Call("s", "torch.exp", {Ref("logprobs"), 1}), Output("s")})),
      HasSubstr("takes at most 1 positional arguments"));
  EXPECT_THAT(refuse(in, Graph({Placeholder("logprobs"), Method("s", "sum", {Ref("logprobs")}),
                                Output("s", {{"loss", Ref("s")}})})),
              HasSubstr("metric 'loss' must be named custom/<name>:sum or custom/<name>:mean"));
  EXPECT_THAT(
      refuse(Inputs({{"logprobs", 1}, {"adv", 3}}), Graph({Placeholder("logprobs"), Output("logprobs")})),
      HasSubstr("inputs[1].rank must be 0, 1 or 2, got 3"));
  EXPECT_THAT(
      refuse(Inputs({{"logprobs", 1}, {"adv", 1}}),
             Graph({Placeholder("logprobs"), Placeholder("advantages"), Output("logprobs")})),
      HasSubstr("graph.nodes[1] 'advantages': placeholder 'advantages' does not match inputs[1] ('adv')"));
  EXPECT_THAT(refuse(in, Graph({Placeholder("logprobs"),
                                Call("e", "torch.exp", Json::array({Json{{"module", "os"}}})), Output("e")})),
              HasSubstr("graph.nodes[1] 'e'.args[0]: unknown encoding 'module'"));
  EXPECT_THAT(refuse(in, Graph({Placeholder("logprobs")})), HasSubstr("graph has no output node"));
  EXPECT_THAT(refuse(Inputs({{"logprobs", 0}}), Graph({Placeholder("logprobs"), Output("logprobs")})),
              HasSubstr("inputs[0]: logprobs has rank 1 ([T]) or 2 ([T, K]"));
}

// logprobs of rank 2: datums with (T, K) target_tokens (top-K distillation). The rank must match.
TEST(CustomLoss, LogprobsOfRankTwoFollowTheTargets) {
  auto loss =
      CustomLoss::Parse("r2", Inputs({{"logprobs", 2}, {"weights", 2}}),
                        Graph({Placeholder("logprobs"), Placeholder("weights"),
                               Call("mul", "operator.mul", Json::array({Ref("logprobs"), Ref("weights")})),
                               Method("sum_1", "sum", Json::array({Ref("mul")})),
                               Call("neg", "operator.neg", Json::array({Ref("sum_1")})), Output("neg")}));
  ASSERT_TRUE(loss.ok()) << loss.status().message();
  at::Tensor lp = at::rand({4, 3}).neg_().requires_grad_(true), w = at::rand({4, 3});
  auto r = (*loss)->Evaluate(lp, {{"weights", w}}, 0);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_NEAR(r->loss.item<double>(), -(lp * w).sum().item<double>(), 1e-5);
  auto wrong = (*loss)->Evaluate(at::zeros({4}), {{"weights", at::zeros({4})}}, 5);
  EXPECT_EQ(wrong.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(
      wrong.status().message(),
      HasSubstr("data[5].loss_fn_inputs.target_tokens has shape [4], so its logprobs have rank 1, but "
                "custom loss 'r2' declared logprobs with rank 2"));
}

TEST(CustomLoss, EvaluationErrorsNameTheDatumTheInputAndTheNode) {
  auto loss = CustomLoss::Parse("ppo_like", PpoInputs(), PpoGraph());
  ASSERT_TRUE(loss.ok());
  at::Tensor lp = at::zeros({5});
  auto missing = (*loss)->Evaluate(lp, {{"sampler_logprobs", at::zeros({5})}}, 3);
  EXPECT_THAT(missing.status().message(), HasSubstr("data[3].loss_fn_inputs.advantages is missing"));
  auto rank =
      (*loss)->Evaluate(lp, {{"sampler_logprobs", at::zeros({5})}, {"advantages", at::zeros({5, 1})}}, 1);
  EXPECT_THAT(
      rank.status().message(),
      HasSubstr("data[1].loss_fn_inputs.advantages has rank 2 (shape [5, 1]), but custom loss 'ppo_like' "
                "declared advantages with rank 1"));
  auto shape =
      (*loss)->Evaluate(lp, {{"sampler_logprobs", at::zeros({4})}, {"advantages", at::zeros({5})}}, 0);
  EXPECT_EQ(shape.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(shape.status().message(),
              HasSubstr("data[0]: custom loss 'ppo_like', node 'sub' (operator.sub): "));
}

TEST(CustomLoss, TheLossMustBeAScalar) {
  auto loss = CustomLoss::Parse(
      "vector", Inputs({{"logprobs", 1}}),
      Graph({Placeholder("logprobs"), Call("e", "torch.exp", {Ref("logprobs")}), Output("e")}));
  ASSERT_TRUE(loss.ok());
  auto r = (*loss)->Evaluate(at::zeros({3}), {}, 0);
  EXPECT_THAT(r.status().message(),
              HasSubstr("must return a scalar floating-point loss, got a tensor of shape [3]"));
}

TEST(CustomLoss, CreatedTensorsAreBoundedBeforeTheyAreMade) {
  auto loss = CustomLoss::Parse("huge", Inputs({{"logprobs", 1}}),
                                Graph({Placeholder("logprobs"), Call("z", "torch.zeros", {100000, 100000}),
                                       Method("s", "sum", {Ref("z")}), Output("s")}));
  ASSERT_TRUE(loss.ok()) << loss.status().message();
  auto r = (*loss)->Evaluate(at::zeros({3}), {}, 0);
  EXPECT_THAT(r.status().message(), HasSubstr("node 'z' (torch.zeros): torch.zeros would hold more than"));
}

TEST(CustomLoss, AllTheValuesOfOneEvaluationAreBounded) {
  // Each expand is within the per-value limit (2^25 elements), but nine of them exceed the total.
  std::vector<Json> nodes = {Placeholder("logprobs"), Call("one", "operator.getitem",
                                                           {Ref("logprobs"), {{"slice", {0, 1, nullptr}}}})};
  for (int i = 0; i < 9; ++i)
    nodes.push_back(Method("e" + std::to_string(i), "expand", {Ref("one"), int64_t{1} << 25}));
  nodes.push_back(Method("s", "sum", {Ref("e8")}));
  nodes.push_back(Output("s"));
  auto loss = CustomLoss::Parse("wide", Inputs({{"logprobs", 1}}), Graph(nodes));
  ASSERT_TRUE(loss.ok()) << loss.status().message();
  auto r = (*loss)->Evaluate(at::zeros({3}), {}, 0);
  EXPECT_THAT(r.status().message(),
              HasSubstr("node 'e7' (method expand): the values of the nodes so far hold more"));
}

TEST(CustomLoss, SupportedOperationsIncludeWhatCommonLossesUse) {
  auto ops = CustomLoss::SupportedOperations();
  for (const char* op : {"operator.add", "operator.getitem", "getattr", "torch.exp", "torch.clamp",
                         "torch.where", "torch._C._nn.log_sigmoid", "torch.nn.functional.log_softmax",
                         "method:sum", "method:detach", "math.log"})
    EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << op;
}

}  // namespace
}  // namespace openrl::engine
