// Tinker's built-in training losses, one datum at a time, as a pure function of the current
// policy's per-token log-probabilities and the datum's loss_fn_inputs. Every loss is a plain SUM
// over tokens (and the caller sums over datums): no normalisation, as Tinker does.
//
// With lp = current log p(target), q = sampler logprobs (input "logprobs"), A = "advantages",
// r = exp(lp - q), w = "weights" (all ones when absent), per token t the loss term is
//   cross_entropy        -w·lp
//   importance_sampling  -w·r·A
//   ppo                  -w·min(r·A, clamp(r, clip_low_threshold, clip_high_threshold)·A)
//   cispo                -w·sg(clamp(r, clip_low_threshold, clip_high_threshold))·lp·A   (sg: no gradient)
//   dro                  -w·(lp·A - ½·beta·(lp - q)²)
// loss_fn_config defaults: ppo clips [0.8, 1.2]; cispo clips [0.0, 4.0] (one-sided); dro's beta has
// no documented default in Tinker, so it must be given. The clips bound the ratio itself, so they must
// satisfy 0 ≤ clip_low_threshold ≤ 1 ≤ clip_high_threshold (an ε passed by mistake is refused).
// "weights" on the RL losses is an OpenRL extension (Tinker documents it for cross_entropy and its
// server refuses it for dro): it masks tokens, dro's penalty included.
//
// "custom" is a loss created with the SDK's ServiceClient.create_custom_loss (custom_loss.h): its
// graph runs on each datum's logprobs and the inputs it declares, and it adds its own metrics.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/engine/custom_loss.h"

namespace openrl::engine {

// One built-in loss with its validated config.
struct LossSpec {
  std::string name;                      // cross_entropy | importance_sampling | ppo | cispo | dro
  std::map<std::string, double> config;  // loss_fn_config with defaults filled in
  std::shared_ptr<const CustomLoss> custom;  // name "custom": the loss the request names by loss_id

  // Checks the name and the config's keys and values (an unknown key or an out-of-range value is
  // INVALID_ARGUMENT naming the key) and fills in defaults. Tinker losses OpenRL lacks (gspo,
  // stable_reinforce) are UNIMPLEMENTED; "custom" is made by its caller with the CustomLoss set.
  static Result<LossSpec> Make(std::string name, const std::map<std::string, double>& config);

  // The loss_fn_inputs this loss requires / also accepts, besides target_tokens (the caller's).
  std::vector<std::string> RequiredInputs() const;
  std::vector<std::string> OptionalInputs() const;
};

struct DatumLoss {
  at::Tensor loss;  // scalar fp32, differentiable w.r.t. the logprobs passed in
  // Per-token outputs besides "logprobs" (which the caller has): "elementwise_loss", the (T,)
  // terms whose sum is `loss`. Detached fp32, on the logprobs' device.
  std::vector<std::pair<std::string, at::Tensor>> outputs;
  // A custom loss's metrics for this datum, "custom/<name>:sum|mean"; callers sum them over the
  // datums of a request and divide the ":mean" ones by their number.
  std::vector<std::pair<std::string, double>> metrics;
};

// logprobs: (T,) current-policy log p(target_tokens[t]); may require grad. cross_entropy also
// takes (T, K): K targets per position (top-K distillation), each weighted by weights[t][k].
// inputs: the datum's loss_fn_inputs (a "target_tokens" entry is ignored), each of the logprobs'
// shape, floating (a custom loss takes the ranks and dtypes it declared, and ignores inputs it
// does not read).
// Errors name the datum and field, e.g. "data[3].loss_fn_inputs.advantages has shape [5], expected
// [7]": missing or unknown inputs, wrong shapes or dtypes, non-finite values.
Result<DatumLoss> ComputeDatumLoss(const LossSpec& spec, const at::Tensor& logprobs,
                                   const std::map<std::string, at::Tensor>& inputs, int64_t datum_index);

}  // namespace openrl::engine
