#include "openrl/engine/optimizer.h"

#include <c10/core/GradMode.h>

#include <cmath>
#include <map>

namespace openrl::engine {

Status AdamParams::Validate() const {
  if (!(lr >= 0)) return InvalidArgument("adam_params.learning_rate must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1)) return InvalidArgument("adam_params.beta1 must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) return InvalidArgument("adam_params.beta2 must be in [0, 1)");
  if (!(eps >= 0)) return InvalidArgument("adam_params.eps must be >= 0");
  if (!(weight_decay >= 0)) return InvalidArgument("adam_params.weight_decay must be >= 0");
  if (!(grad_clip_norm >= 0)) return InvalidArgument("adam_params.grad_clip_norm must be >= 0");
  return Status::Ok();
}

AdamW::AdamW(std::vector<at::Tensor> params) : params_(std::move(params)) {
  for (const auto& p : params_) {
    exp_avg_.push_back(at::zeros_like(p, at::MemoryFormat::Contiguous));
    exp_avg_sq_.push_back(at::zeros_like(p, at::MemoryFormat::Contiguous));
    state_steps_.push_back(at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(p.device())));
  }
}

bool AdamW::HasGradients() const {
  for (const auto& p : params_)
    if (p.grad().defined()) return true;
  return false;
}

void AdamW::ZeroGrad() {
  for (auto& p : params_)
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
}

Result<StepStats> AdamW::Step(const AdamParams& hp) {
  OPENRL_RETURN_IF_ERROR(hp.Validate());
  if (!HasGradients())
    return FailedPrecondition("optim_step: no gradients have been accumulated since the last step");
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> ps, gs, ms, vs, ss;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;
    ps.push_back(params_[i]);
    gs.push_back(params_[i].grad());
    ms.push_back(exp_avg_[i]);
    vs.push_back(exp_avg_sq_[i]);
    ss.push_back(state_steps_[i]);
  }
  StepStats stats;
  // Global L2 norm of all gradients, as torch.nn.utils.clip_grad_norm_: per-tensor norms (summed
  // in fp32 by the kernel, given in the gradients' dtype: asking for fp32 output would first cast
  // every bf16 gradient, a weight-sized copy), then the norm of those in fp32. The foreach forms
  // are one multi-tensor kernel on CUDA (a full fine-tuning step has a few hundred gradients) and
  // the same per-tensor ops on CPU.
  std::vector<at::Tensor> norms = at::_foreach_norm(gs, 2);
  for (auto& n : norms) n = n.to(at::kFloat);  // scalars; gradients of mixed dtypes stack alike
  at::Tensor total = at::stack(norms).norm();
  stats.grad_norm = total.item<double>();
  if (!std::isfinite(stats.grad_norm))
    return FailedPrecondition("optim_step: gradient norm is not finite; step skipped");
  if (hp.grad_clip_norm > 0) {
    double coef = hp.grad_clip_norm / (stats.grad_norm + 1e-6);
    if (coef < 1.0) {
      at::_foreach_mul_(gs, coef);
      stats.clipped = true;
    }
  }
  for (auto& s : ss) s.add_(1);
  at::_fused_adamw_(ps, gs, ms, vs, {}, ss, hp.lr, hp.beta1, hp.beta2, hp.weight_decay, hp.eps,
                    /*amsgrad=*/false, /*maximize=*/false);
  ++steps_;
  stats.step = steps_;
  ZeroGrad();
  return stats;
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::StateTensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("exp_avg." + std::to_string(i), exp_avg_[i]);
    out.emplace_back("exp_avg_sq." + std::to_string(i), exp_avg_sq_[i]);
    out.emplace_back("param_step." + std::to_string(i), state_steps_[i]);
  }
  out.emplace_back("step", at::scalar_tensor(steps_, at::kLong));
  return out;
}

Status AdamW::LoadState(const std::vector<std::pair<std::string, at::Tensor>>& state) {
  std::map<std::string, at::Tensor> byname(state.begin(), state.end());
  // Check everything first, so a bad state leaves the optimizer as it was.
  std::vector<std::pair<at::Tensor*, const at::Tensor*>> copies;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [prefix, dst] : {std::pair{"exp_avg.", &exp_avg_[i]}, {"exp_avg_sq.", &exp_avg_sq_[i]},
                               {"param_step.", &state_steps_[i]}}) {
      std::string key = prefix + std::to_string(i);
      auto it = byname.find(key);
      if (it == byname.end()) return InvalidArgument("optimizer state: missing '" + key + "'");
      if (it->second.sizes() != dst->sizes())
        return InvalidArgument("optimizer state: '" + key + "' has the wrong shape");
      copies.emplace_back(dst, &it->second);
    }
  }
  auto it = byname.find("step");
  if (it == byname.end()) return InvalidArgument("optimizer state: missing 'step'");
  at::NoGradGuard no_grad;
  for (auto [dst, src] : copies) dst->copy_(*src);
  steps_ = it->second.item<int64_t>();
  return Status::Ok();
}

}  // namespace openrl::engine
