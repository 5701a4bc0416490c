#include "openrl/engine/trainer.h"

#include <torch/csrc/autograd/autograd.h>

#include <algorithm>

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

Result<StepReport> Trainer::ForwardBackward(const std::vector<std::vector<int32_t>>& sequences,
                                            const std::vector<int64_t>& loss_from) {
  auto start = std::chrono::steady_clock::now();
  StepReport rep;
  if (!loss_from.empty() && loss_from.size() != sequences.size())
    return InvalidArgument("loss_from has " + std::to_string(loss_from.size()) + " entries for " +
                           std::to_string(sequences.size()) + " sequences");
  // Target index t predicts token t + 1; it counts when t + 1 >= first.
  auto first_target = [&](size_t row) { return loss_from.empty() ? int64_t{0} : std::max<int64_t>(0, loss_from[row] - 1); };
  int64_t total_targets = 0;
  for (size_t i = 0; i < sequences.size(); ++i) {
    int64_t n = sequences[i].empty() ? 0 : static_cast<int64_t>(sequences[i].size()) - 1;
    total_targets += std::max<int64_t>(0, n - first_target(i));
  }
  if (total_targets == 0) return InvalidArgument("training batch has no target tokens");
  model::LoraBatch lora;
  lora.training = true;
  if (adapter_) lora.groups.push_back({adapter_, {}});
  double loss_sum = 0;
  try {
    for (size_t begin = 0; begin < sequences.size(); begin += opts_.micro_batch) {
      size_t end = std::min(sequences.size(), begin + static_cast<size_t>(opts_.micro_batch));
      std::vector<std::vector<int32_t>> micro(sequences.begin() + begin, sequences.begin() + end);
      OPENRL_ASSIGN_OR_RETURN(TokenBatch batch, MakeShiftedBatch(micro, model_.config()));
      for (size_t row = begin; row < end; ++row) {
        int64_t skip = std::min<int64_t>(first_target(row), batch.mask.size(1));
        if (skip > 0) batch.mask[static_cast<int64_t>(row - begin)].narrow(0, 0, skip).zero_();
      }
      at::Tensor lp = TargetLogprobs(model_, batch, adapter_ ? &lora : nullptr, opts_.checkpoint_layers);
      // Mean over all target tokens of the step, so accumulation equals one big batch.
      at::Tensor loss = -lp.sum() / static_cast<double>(total_targets);
      torch::autograd::backward({loss});
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
  auto start = std::chrono::steady_clock::now();
  OPENRL_ASSIGN_OR_RETURN(StepReport rep, ForwardBackward(sequences, loss_from));
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
