// Server-side custom losses of the Tinker SDK (ServiceClient.create_custom_loss): a user's
// per-datum torch loss function, traced by torch.fx on the client and sent as plain JSON — its
// nodes in execution order, each naming an operation and its encoded arguments
// (tinker.types.CustomLossGraph). The graph is data, never code: every call must name one of the
// operations in the fixed table of custom_loss_ops*.cc, each of which maps onto ATen calls;
// anything else is refused when the loss is created, with an error naming the node.
//
// Evaluating it on one datum gives what the SDK's client-side path (run_loss_handle) gives: the
// function is called as fn(logprobs, *inputs) and returns (loss, metrics), a scalar loss —
// differentiable w.r.t. logprobs, so gradients flow into the adapter — and scalar metrics keyed
// "custom/<name>:sum" or "custom/<name>:mean". Callers sum losses over datums, sum the ":sum"
// metrics and average the ":mean" ones.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"

namespace openrl::engine {

struct CustomLossInput {
  std::string name;  // "logprobs" first, then the loss_fn_inputs keys the loss reads
  int64_t rank = 1;  // 0: a scalar, 1: [T], 2: [T, K]
};

struct CustomLossLimits {
  static constexpr size_t kMaxNodes = 4096;
  static constexpr size_t kMaxInputs = 16;               // logprobs included, as the SDK allows
  static constexpr int kMaxArgumentDepth = 16;           // nesting of lists, tuples and dicts in one argument
  static constexpr int64_t kMaxElements = 1 << 26;       // elements of any one value a node makes
  static constexpr int64_t kMaxTotalElements = 1 << 28;  // of all the values one datum's evaluation makes
};

struct CustomLossResult {
  at::Tensor loss;  // 0-dim floating, on the logprobs' device; differentiable when grad mode is on
  std::vector<std::pair<std::string, double>> metrics;  // "custom/<name>:sum|mean" → this datum's value
};

class CustomLoss {
 public:
  // Parses and validates a create_custom_loss request's `inputs` ([{name, rank}], logprobs first)
  // and `graph` ({format: 1, nodes: [...]}) completely: every node's kind, name and target, each
  // called operation against the table, its arguments against the operation's parameters
  // (count, keyword names, literal kinds), references only to earlier nodes, placeholders that
  // match the inputs, and an output of (loss, {metric: node}). INVALID_ARGUMENT naming the node
  // and field otherwise. logprobs have rank 1, or 2 for datums with (T, K) target_tokens.
  static Result<std::shared_ptr<const CustomLoss>> Parse(const std::string& name, const Json& inputs,
                                                         const Json& graph);
  ~CustomLoss();
  CustomLoss(const CustomLoss&) = delete;
  CustomLoss& operator=(const CustomLoss&) = delete;

  const std::string& name() const { return name_; }
  const std::vector<CustomLossInput>& inputs() const { return inputs_; }

  // Runs the graph on one datum: `logprobs` (T,) or (T, K), the declared rank, floating (may require grad)
  // and the datum's loss_fn_inputs (those the loss does not read are ignored). Errors name the datum and, for
  // a failing operation, the node: "data[2]: custom loss 'dpo', node 'mul_2' (operator.mul): ...".
  Result<CustomLossResult> Evaluate(const at::Tensor& logprobs,
                                    const std::map<std::string, at::Tensor>& loss_fn_inputs,
                                    int64_t datum_index) const;

  // Every operation the evaluator runs, as a graph names it: "torch.exp", "operator.add",
  // "getattr", "method:sum" (a torch.Tensor method), sorted.
  static std::vector<std::string> SupportedOperations();

 private:
  struct Graph;
  CustomLoss(std::string name, std::vector<CustomLossInput> inputs, std::unique_ptr<Graph> graph);

  std::string name_;
  std::vector<CustomLossInput> inputs_;
  std::unique_ptr<Graph> graph_;
};

}  // namespace openrl::engine
