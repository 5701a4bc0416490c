#include "openrl/engine/losses.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string_view>

namespace openrl::engine {
namespace {

struct ConfigKey {
  std::string name;
  std::optional<double> fallback;  // nullopt: the caller must give it
};

struct LossInfo {
  std::string name;
  std::vector<ConfigKey> config;
  std::vector<std::string> required_inputs;
  std::vector<std::string> optional_inputs;
};

// Defaults: PPO's [0.8, 1.2] and CISPO's one-sided [0, 4] are Tinker's (docs/losses.mdx and
// tutorials/202_loss_functions.py in thinking-machines-lab/tinker-cookbook).
const std::vector<LossInfo>& BuiltinLosses() {
  static const auto* losses = new std::vector<LossInfo>{
      {"cross_entropy", {}, {}, {"weights"}},
      {"importance_sampling", {}, {"logprobs", "advantages"}, {"weights"}},
      {"ppo",
       {{"clip_low_threshold", 0.8}, {"clip_high_threshold", 1.2}},
       {"logprobs", "advantages"},
       {"weights"}},
      {"cispo",
       {{"clip_low_threshold", 0.0}, {"clip_high_threshold", 4.0}},
       {"logprobs", "advantages"},
       {"weights"}},
      {"dro", {{"beta", std::nullopt}}, {"logprobs", "advantages"}, {"weights"}},
      // GSPO-token (Tinker's losses/gspo page): the ratio clipped here is the sequence's, the
      // geometric mean of the token ratios over the tokens sequence_ratio_mask marks. Its clip
      // bounds are the ratio bounds PPO takes, with PPO's defaults (that page writes the same
      // clip(·, 1 − ε_low, 1 + ε_high), and the PPO page gives ε = 0.2).
      {"gspo",
       {{"clip_low_threshold", 0.8}, {"clip_high_threshold", 1.2}},
       {"logprobs", "advantages", "sequence_ratio_mask"},
       {"weights"}},
  };
  return *losses;
}

const LossInfo* FindLoss(std::string_view name) {
  for (const auto& info : BuiltinLosses())
    if (info.name == name) return &info;
  return nullptr;
}

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

std::string ConfigKeyNames(const LossInfo& info) {
  std::vector<std::string> names;
  for (const auto& k : info.config) names.push_back(k.name);
  return names.empty() ? "it takes none" : "it takes " + Join(names);
}

Status CheckRanges(const LossSpec& spec) {
  const auto& c = spec.config;
  if (spec.name == "ppo" || spec.name == "cispo" || spec.name == "gspo") {
    // Both are bounds on the ratio p/q itself (e.g. 0.8 and 1.2), not ε: a range that leaves out 1
    // is almost always ε passed by mistake.
    const double lo = c.at("clip_low_threshold"), hi = c.at("clip_high_threshold");
    if (lo < 0 || lo > 1)
      return InvalidArgument(
          "loss_fn_config.clip_low_threshold must be in [0, 1] (a bound on the ratio, "
          "e.g. 0.8, not ε), got " +
          Num(lo));
    if (hi < 1)
      return InvalidArgument(
          "loss_fn_config.clip_high_threshold must be at least 1 (a bound on the ratio, "
          "e.g. 1.2, not ε), got " +
          Num(hi));
  }
  if (spec.name == "dro" && c.at("beta") < 0)
    return InvalidArgument("loss_fn_config.beta must be non-negative, got " + Num(c.at("beta")));
  return Status::Ok();
}

// Checks one input of the logprobs' shape, (T,) or (T, K), and returns it as fp32 on `device`.
Result<at::Tensor> CheckedInput(const at::Tensor& t, const std::string& field, at::IntArrayRef shape,
                                const at::Device& device) {
  if (!t.defined()) return InvalidArgument(field + " is empty");
  if (!t.is_floating_point())
    return InvalidArgument(field + " has dtype " + std::string(c10::toString(t.scalar_type())) +
                           ", expected float32");
  if (t.sizes() != shape) {
    std::ostringstream msg;
    msg << field << " has shape " << t.sizes() << ", expected " << shape;
    return InvalidArgument(msg.str());
  }
  at::Tensor bad = at::logical_not(at::isfinite(t));
  if (bad.any().item<bool>()) {
    at::Tensor at = bad.nonzero()[0];
    std::string index;
    for (int64_t d = 0; d < at.size(0); ++d) index += "[" + std::to_string(at[d].item<int64_t>()) + "]";
    return InvalidArgument(field + index + " is " + Num(t.masked_select(bad)[0].item<double>()) +
                           "; values must be finite");
  }
  return t.detach().to(device, at::kFloat);
}

// Per-token loss terms (T,) before weights. lp: fp32 current-policy logprobs.
at::Tensor LossTerms(const LossSpec& spec, const at::Tensor& lp,
                     const std::map<std::string, at::Tensor>& in) {
  if (spec.name == "cross_entropy") return -lp;
  const at::Tensor& sampler_lp = in.at("logprobs");
  const at::Tensor& adv = in.at("advantages");
  if (spec.name == "dro") {
    const at::Tensor drift = lp - sampler_lp;
    return -(lp * adv - 0.5 * spec.config.at("beta") * drift * drift);
  }
  if (spec.name == "cispo") {
    at::Tensor coef;
    {
      at::NoGradGuard no_grad;  // the clipped ratio is a constant coefficient
      coef = at::clamp(at::exp(lp - sampler_lp), spec.config.at("clip_low_threshold"),
                       spec.config.at("clip_high_threshold"));
    }
    return -(coef * lp * adv);
  }
  if (spec.name == "gspo") {
    // Every token carries the sequence ratio's value, with the gradient of its own log-probability.
    at::Tensor in_ratio = in.at("sequence_ratio_mask") != 0;
    at::Tensor log_ratio = (lp.detach() - sampler_lp).masked_select(in_ratio).mean();
    const at::Tensor ratio = at::exp(log_ratio + lp - lp.detach());
    const at::Tensor clipped =
        at::clamp(ratio, spec.config.at("clip_low_threshold"), spec.config.at("clip_high_threshold"));
    return -at::minimum(ratio * adv, clipped * adv);
  }
  const at::Tensor ratio = at::exp(lp - sampler_lp);
  if (spec.name == "importance_sampling") return -(ratio * adv);
  // ppo
  const at::Tensor clipped =
      at::clamp(ratio, spec.config.at("clip_low_threshold"), spec.config.at("clip_high_threshold"));
  return -at::minimum(ratio * adv, clipped * adv);
}

Result<DatumLoss> ComputeCustomLoss(const LossSpec& spec, const at::Tensor& logprobs,
                                    const std::map<std::string, at::Tensor>& inputs, int64_t datum_index) {
  if (spec.custom == nullptr)
    return Internal("data[" + std::to_string(datum_index) +
                    "]: the custom loss named by loss_id was not loaded");
  OPENRL_ASSIGN_OR_RETURN(CustomLossResult r, spec.custom->Evaluate(logprobs, inputs, datum_index));
  DatumLoss out;
  out.loss = r.loss.to(at::kFloat);
  out.metrics = std::move(r.metrics);
  return out;
}

}  // namespace

Result<LossSpec> LossSpec::Make(std::string name, const std::map<std::string, double>& config) {
  const LossInfo* info = FindLoss(name);
  if (info == nullptr) {
    if (name == "stable_reinforce")
      return Unimplemented(
          "loss_fn '" + name +
          "' is a Tinker loss OpenRL does not offer yet (it needs the "
          "stability info Tinker records at sampling time); train with importance_sampling, ppo, "
          "cispo or gspo");
    if (name == "custom")
      return InvalidArgument(
          "loss_fn 'custom' runs a loss made with ServiceClient.create_custom_loss; it needs "
          "loss_fn_config.loss_id");
    std::vector<std::string> known;
    for (const auto& l : BuiltinLosses()) known.push_back(l.name);
    return InvalidArgument("unknown loss_fn '" + name + "'; the built-in losses are " + Join(known));
  }
  LossSpec spec;
  spec.name = std::move(name);
  for (const auto& [key, value] : config) {
    bool known = false;
    for (const auto& k : info->config) known = known || k.name == key;
    if (!known)
      return InvalidArgument("loss_fn_config." + key + " is not a setting of " + spec.name + " (" +
                             ConfigKeyNames(*info) + ")");
    if (!std::isfinite(value))
      return InvalidArgument("loss_fn_config." + key + " must be finite, got " + Num(value));
    spec.config[key] = value;
  }
  for (const auto& k : info->config) {
    if (spec.config.count(k.name)) continue;
    if (!k.fallback)
      return InvalidArgument(spec.name + " requires loss_fn_config." + k.name + " (it has no default)");
    spec.config[k.name] = *k.fallback;
  }
  OPENRL_RETURN_IF_ERROR(CheckRanges(spec));
  return spec;
}

std::vector<std::string> LossSpec::RequiredInputs() const {
  const LossInfo* info = FindLoss(name);
  return info ? info->required_inputs : std::vector<std::string>{};
}

std::vector<std::string> LossSpec::OptionalInputs() const {
  const LossInfo* info = FindLoss(name);
  return info ? info->optional_inputs : std::vector<std::string>{};
}

Result<DatumLoss> ComputeDatumLoss(const LossSpec& spec, const at::Tensor& logprobs,
                                   const std::map<std::string, at::Tensor>& inputs, int64_t datum_index) {
  const std::string where = "data[" + std::to_string(datum_index) + "]";
  if (spec.name == "custom") return ComputeCustomLoss(spec, logprobs, inputs, datum_index);
  const LossInfo* info = FindLoss(spec.name);
  if (info == nullptr) return InvalidArgument(where + ": unknown loss_fn '" + spec.name + "'");
  if (!logprobs.defined() || logprobs.dim() < 1 || logprobs.dim() > 2 || !logprobs.is_floating_point())
    return Internal(where + ": the policy log-probabilities must be a (T,) or (T, K) floating tensor");
  const std::string prefix = where + ".loss_fn_inputs.";
  if (logprobs.dim() == 2 && spec.name != "cross_entropy")
    return InvalidArgument(prefix + "target_tokens has shape [" + std::to_string(logprobs.size(0)) + ", " +
                           std::to_string(logprobs.size(1)) +
                           "]: several targets per position (top-K distillation) "
                           "are taken by cross_entropy only, not by " +
                           spec.name);
  try {
    for (const auto& [key, value] : inputs) {
      if (key == "target_tokens" || Contains(info->required_inputs, key) ||
          Contains(info->optional_inputs, key))
        continue;
      std::vector<std::string> accepted = info->required_inputs;
      accepted.insert(accepted.end(), info->optional_inputs.begin(), info->optional_inputs.end());
      return InvalidArgument(prefix + key + " is not an input of " + spec.name +
                             " (it takes target_tokens, " + Join(accepted) + ")");
    }
    std::map<std::string, at::Tensor> checked;  // fp32 on the logprobs' device
    for (const auto& key : info->required_inputs)
      if (!inputs.count(key))
        return InvalidArgument(prefix + key + " is missing; " + spec.name + " requires " +
                               Join(info->required_inputs));
    for (const auto& [key, value] : inputs) {
      if (key == "target_tokens") continue;
      OPENRL_ASSIGN_OR_RETURN(checked[key],
                              CheckedInput(value, prefix + key, logprobs.sizes(), logprobs.device()));
    }
    if (auto m = checked.find("sequence_ratio_mask");
        m != checked.end() && !(m->second != 0).any().item<bool>())
      return InvalidArgument(prefix + "sequence_ratio_mask marks no token; " + spec.name +
                             "'s sequence ratio is the mean over the tokens it marks");
    at::Tensor terms = LossTerms(spec, logprobs.to(at::kFloat), checked);  // (T,) or (T, K)
    if (auto w = checked.find("weights"); w != checked.end()) terms = terms * w->second;
    DatumLoss out;
    out.loss = terms.sum();
    out.outputs.emplace_back("elementwise_loss", terms.detach());
    return out;
  } catch (const std::exception& e) {
    return StatusFromException(e, where);
  }
}

}  // namespace openrl::engine
