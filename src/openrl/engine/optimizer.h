// AdamW over a list of parameters, with global gradient-norm clipping, matching
// torch.optim.AdamW (decoupled weight decay, bias correction). Moments are kept per parameter
// and can be saved and restored bit for bit.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "openrl/core/status.h"

namespace openrl::engine {

struct AdamParams {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-12;
  double weight_decay = 0.0;
  double grad_clip_norm = 0.0;  // 0 = no clipping
  Status Validate() const;
};

struct StepStats {
  double grad_norm = 0;  // before clipping
  bool clipped = false;
  int64_t step = 0;
};

class AdamW {
 public:
  explicit AdamW(std::vector<at::Tensor> params);

  // Applies one update from the accumulated .grad of every parameter, then zeroes them.
  // FAILED_PRECONDITION when no parameter has a gradient (nothing was accumulated).
  Result<StepStats> Step(const AdamParams& p);
  void ZeroGrad();
  bool HasGradients() const;
  int64_t steps() const { return steps_; }

  // State as named tensors: "exp_avg.<i>", "exp_avg_sq.<i>", "step".
  std::vector<std::pair<std::string, at::Tensor>> StateTensors() const;
  Status LoadState(const std::vector<std::pair<std::string, at::Tensor>>& state);

 private:
  std::vector<at::Tensor> params_, exp_avg_, exp_avg_sq_;
  std::vector<at::Tensor> state_steps_;  // fp32 scalars, as the fused kernel expects
  int64_t steps_ = 0;
};

}  // namespace openrl::engine
