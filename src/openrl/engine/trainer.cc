#include "openrl/engine/trainer.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>

namespace openrl::engine {

Trainer::Trainer(model::Transformer& model, model::LoraAdapter* adapter, TrainerOptions opts)
    : model_(model), adapter_(adapter), opts_(opts) {
  if (adapter_) {
    model_.SetRequiresGrad(false);
    adapter_->SetRequiresGrad(true);
  } else {
    model_.SetRequiresGrad(true);
  }
  optimizer_ = std::make_unique<AdamW>(TrainableParameters());
}

std::vector<at::Tensor> Trainer::TrainableParameters() const {
  if (adapter_) return adapter_->Parameters();
  std::vector<at::Tensor> out;
  for (auto& [name, t] : model_.NamedParameters()) out.push_back(t);
  return out;
}

void Trainer::SetThroughput(StepReport& rep, std::chrono::steady_clock::time_point start) const {
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rep.tokens_per_second = rep.tokens / std::max(rep.seconds, 1e-9);
  if (opts_.peak_flops > 0) {
    // Full fine-tuning: 6·N per token. LoRA: the frozen base needs no weight gradients, so 4·N
    // (forward + input gradients) plus 6·N_lora; attention FLOPs are not counted.
    double n = static_cast<double>(model_.config().NumParameters()), flops_per_token = 6.0 * n;
    if (adapter_) {
      double n_lora = 0;
      for (const auto& p : adapter_->Parameters()) n_lora += static_cast<double>(p.numel());
      flops_per_token = 4.0 * n + 6.0 * n_lora;
    }
    rep.mfu = flops_per_token * rep.tokens_per_second / opts_.peak_flops;
  }
}

namespace {

// Per-token weights that count the tokens at index >= loss_from[row] (empty: every token).
Result<std::vector<std::vector<float>>> WeightsFrom(const std::vector<std::vector<int32_t>>& sequences,
                                                    const std::vector<int64_t>& loss_from) {
  std::vector<std::vector<float>> weights;
  if (loss_from.empty()) return weights;
  if (loss_from.size() != sequences.size())
    return InvalidArgument("loss_from has " + std::to_string(loss_from.size()) + " entries for " +
                           std::to_string(sequences.size()) + " sequences");
  weights.resize(sequences.size());
  for (size_t i = 0; i < sequences.size(); ++i) {
    weights[i].assign(sequences[i].size(), 0.0f);
    for (size_t t = static_cast<size_t>(std::max<int64_t>(loss_from[i], 0)); t < sequences[i].size(); ++t)
      weights[i][t] = 1.0f;
  }
  return weights;
}

}  // namespace

Result<StepReport> Trainer::ForwardBackward(const std::vector<std::vector<int32_t>>& sequences,
                                            const std::vector<int64_t>& loss_from) {
  OPENRL_ASSIGN_OR_RETURN(auto weights, WeightsFrom(sequences, loss_from));
  return ForwardBackwardWeighted(sequences, weights);
}

Result<StepReport> Trainer::ForwardBackwardWeighted(const std::vector<std::vector<int32_t>>& sequences,
                                                    const std::vector<std::vector<float>>& weights,
                                                    const std::vector<std::vector<int64_t>>& segments) {
  return Pass(sequences, weights, segments, true);
}

Result<StepReport> Trainer::EvaluateWeighted(const std::vector<std::vector<int32_t>>& sequences,
                                             const std::vector<std::vector<float>>& weights,
                                             const std::vector<std::vector<int64_t>>& segments) {
  c10::NoGradGuard no_grad;
  return Pass(sequences, weights, segments, false);
}

Result<StepReport> Trainer::Pass(const std::vector<std::vector<int32_t>>& sequences,
                                 std::vector<std::vector<float>> weights,
                                 const std::vector<std::vector<int64_t>>& segments, bool backward) {
  auto start = std::chrono::steady_clock::now();
  StepReport rep;
  if (!weights.empty() && weights.size() != sequences.size())
    return InvalidArgument("weights has " + std::to_string(weights.size()) + " rows for " +
                           std::to_string(sequences.size()) + " sequences");
  if (!segments.empty()) {
    if (segments.size() != sequences.size())
      return InvalidArgument("segments has " + std::to_string(segments.size()) + " rows for " +
                             std::to_string(sequences.size()) + " sequences");
    // The first token of each packed sequence is not a target: nothing before it in its sequence.
    if (weights.empty())
      for (const auto& row : sequences) weights.emplace_back(row.size(), 1.0f);
    for (size_t i = 0; i < sequences.size(); ++i) {
      size_t at = 0;
      for (int64_t len : segments[i]) {
        if (at < weights[i].size()) weights[i][at] = 0.0f;
        at += static_cast<size_t>(std::max<int64_t>(len, 0));
      }
    }
  }
  double total_weight = 0;
  int64_t total_targets = 0;
  for (size_t i = 0; i < sequences.size(); ++i) {
    if (weights.empty()) {
      int64_t n = std::max<int64_t>(0, static_cast<int64_t>(sequences[i].size()) - 1);
      total_targets += n;
      total_weight += static_cast<double>(n);
      continue;
    }
    if (weights[i].size() != sequences[i].size())
      return InvalidArgument("row " + std::to_string(i) + ": " + std::to_string(weights[i].size()) +
                             " weights for " + std::to_string(sequences[i].size()) + " tokens");
    for (size_t t = 1; t < weights[i].size(); ++t) {
      float w = weights[i][t];
      if (!std::isfinite(w) || w < 0)
        return InvalidArgument("row " + std::to_string(i) + ", token " + std::to_string(t) + ": weight " +
                               std::to_string(w) + " is not a finite number >= 0");
      if (w > 0) ++total_targets;
      total_weight += w;
    }
  }
  if (total_targets == 0 || total_weight <= 0)
    return InvalidArgument(backward ? "training batch has no target tokens"
                                    : "evaluation data has no target tokens");
  model::LoraBatch lora;
  lora.training = backward;
  if (adapter_) lora.groups.push_back({adapter_, {}});
  double loss_sum = 0;
  try {
    for (size_t begin = 0; begin < sequences.size(); begin += opts_.micro_batch) {
      size_t end = std::min(sequences.size(), begin + static_cast<size_t>(opts_.micro_batch));
      std::vector<std::vector<int32_t>> micro(sequences.begin() + begin, sequences.begin() + end);
      TokenBatch batch;
      if (segments.empty()) {
        OPENRL_ASSIGN_OR_RETURN(batch, MakeShiftedBatch(micro, model_.config()));
      } else {
        std::vector<std::vector<int64_t>> micro_segments(segments.begin() + begin, segments.begin() + end);
        OPENRL_ASSIGN_OR_RETURN(batch, MakePackedBatch(micro, micro_segments, model_.config()));
      }
      at::Tensor lp =
          TargetLogprobs(model_, batch, adapter_ ? &lora : nullptr, backward && opts_.checkpoint_layers);
      at::Tensor summed;
      if (weights.empty()) {
        summed = lp.sum();
      } else {
        // Target index t predicts token t + 1, so it takes that token's weight.
        at::Tensor w = at::zeros(batch.mask.sizes(), at::kFloat);
        auto wa = w.accessor<float, 2>();
        for (size_t row = begin; row < end; ++row)
          for (size_t t = 1; t < weights[row].size(); ++t)
            wa[static_cast<int64_t>(row - begin)][static_cast<int64_t>(t - 1)] = weights[row][t];
        summed = (lp * w.to(lp.device())).sum();
      }
      // Mean over the step's weighted targets, so accumulation equals one big batch.
      at::Tensor loss = -summed / total_weight;
      if (backward) torch::autograd::backward({loss});
      loss_sum += loss.item<double>();
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "forward_backward");
  }
  rep.loss = loss_sum;
  rep.tokens = total_targets;
  SetThroughput(rep, start);
  return rep;
}

Result<StepReport> Trainer::Step(const std::vector<std::vector<int32_t>>& sequences, const AdamParams& hp,
                                 const std::vector<int64_t>& loss_from) {
  OPENRL_ASSIGN_OR_RETURN(auto weights, WeightsFrom(sequences, loss_from));
  return StepWeighted(sequences, weights, hp);
}

Result<StepReport> Trainer::StepWeighted(const std::vector<std::vector<int32_t>>& sequences,
                                         const std::vector<std::vector<float>>& weights, const AdamParams& hp,
                                         const std::vector<std::vector<int64_t>>& segments) {
  auto start = std::chrono::steady_clock::now();
  OPENRL_ASSIGN_OR_RETURN(StepReport rep, ForwardBackwardWeighted(sequences, weights, segments));
  OPENRL_ASSIGN_OR_RETURN(StepStats st, optimizer_->Step(hp));
  rep.grad_norm = st.grad_norm;
  SetThroughput(rep, start);
  return rep;
}

double MeasureMatmulPeak(int64_t n, int iterations) {
  at::Tensor a = at::randn({n, n}), b = at::randn({n, n});
  at::matmul(a, b);  // warm up
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) at::matmul(a, b);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return 2.0 * n * n * n * iterations / s;
}

}  // namespace openrl::engine
