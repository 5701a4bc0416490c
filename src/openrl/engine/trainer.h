// Trainer: supervised steps over one model — LoRA (frozen base, one adapter) or full
// fine-tuning — with gradient accumulation over micro-batches, AdamW and clipping, reporting
// loss, gradient norm, tokens/s and MFU. The quickstart, `openrl train` and the benches use it.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/engine/forward.h"
#include "openrl/engine/optimizer.h"
#include "openrl/model/lora.h"
#include "openrl/model/transformer.h"

namespace openrl::engine {

struct TrainerOptions {
  int64_t micro_batch = 8;          // rows per forward/backward
  bool checkpoint_layers = false;   // activation checkpointing
  double peak_flops = 0;            // for MFU; 0 = not reported
};

struct StepReport {
  double loss = 0;            // mean NLL per target token
  int64_t tokens = 0;         // target tokens in the step
  double grad_norm = 0;
  double seconds = 0;
  double tokens_per_second = 0;
  double mfu = 0;             // model FLOPs/s over the peak: 6·N per token (full), 4·N + 6·N_lora (LoRA)
};

class Trainer {
 public:
  // adapter == nullptr → full fine-tuning of `model` (which must be mutable then).
  Trainer(model::Transformer& model, model::LoraAdapter* adapter, TrainerOptions opts);

  // Forward and backward over `sequences` (each ≥ 2 tokens, next-token targets), accumulating
  // gradients of the mean token NLL; returns the loss without stepping. With `loss_from`, row i
  // only counts the tokens at index ≥ loss_from[i] as targets (e.g. a completion after its
  // prompt); the mean is over the counted tokens.
  Result<StepReport> ForwardBackward(const std::vector<std::vector<int32_t>>& sequences,
                                     const std::vector<int64_t>& loss_from = {});
  // The same with a weight per token: weights[i][t] (≥ 0, finite) scales the NLL of predicting
  // sequences[i][t] from the tokens before it (weights[i][0] is never used: the first token has
  // no prefix). The loss is Σ w·NLL / Σ w over the step; `tokens` counts the weighted targets.
  // Empty `weights` = every target weighs 1. Errors name the row and position.
  // With `segments` (one list per row, of lengths summing to the row's), each row holds several
  // sequences packed end to end (MakePackedBatch): each attends only to itself, and its first token
  // is not a target. The loss equals that of the same sequences one per row.
  Result<StepReport> ForwardBackwardWeighted(const std::vector<std::vector<int32_t>>& sequences,
                                             const std::vector<std::vector<float>>& weights,
                                             const std::vector<std::vector<int64_t>>& segments = {});
  // The loss ForwardBackwardWeighted would report, without gradients (no dropout): for held-out
  // data. `seconds`/`tokens_per_second` time the forwards.
  Result<StepReport> EvaluateWeighted(const std::vector<std::vector<int32_t>>& sequences,
                                      const std::vector<std::vector<float>>& weights,
                                      const std::vector<std::vector<int64_t>>& segments = {});
  // ForwardBackward, then one optimizer step.
  Result<StepReport> Step(const std::vector<std::vector<int32_t>>& sequences, const AdamParams& hp,
                          const std::vector<int64_t>& loss_from = {});
  Result<StepReport> StepWeighted(const std::vector<std::vector<int32_t>>& sequences,
                                  const std::vector<std::vector<float>>& weights, const AdamParams& hp,
                                  const std::vector<std::vector<int64_t>>& segments = {});

  AdamW& optimizer() { return *optimizer_; }
  std::vector<at::Tensor> TrainableParameters() const;

 private:
  void SetThroughput(StepReport& rep, std::chrono::steady_clock::time_point start) const;
  Result<StepReport> Pass(const std::vector<std::vector<int32_t>>& sequences,
                          std::vector<std::vector<float>> weights,
                          const std::vector<std::vector<int64_t>>& segments, bool backward);

  model::Transformer& model_;
  model::LoraAdapter* adapter_;
  TrainerOptions opts_;
  std::unique_ptr<AdamW> optimizer_;
};

// Measured fp32 matmul throughput of this machine (FLOP/s), for MFU.
double MeasureMatmulPeak(int64_t n = 1024, int iterations = 8);

}  // namespace openrl::engine
