// Training-side forward passes: per-token log-probabilities of target tokens for a batch of
// sequences of different lengths (right-padded; causal attention means real tokens never
// see the padding, so no mask is needed), with gradients when grad mode is on.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/model/transformer.h"

namespace openrl::engine {

struct TokenBatch {
  at::Tensor input_ids;  // (B, T) int64, right-padded with 0
  // (B, T) int64: next token for each position (0 on padding); or (B, T, K) when some row has K
  // targets per position (top-K distillation), rows with fewer padded with token 0.
  at::Tensor targets;
  at::Tensor mask;       // (B, T) float: 1 where a target exists
  std::vector<int64_t> lengths;  // input length per row
  at::Tensor position_ids, segment_ids;  // (B, T) int64, packed rows only (MakePackedBatch)
};

// Builds inputs/targets from full sequences: input = seq[:-1], target = seq[1:]. Checks ids
// against the vocabulary and lengths against the context; errors name the row and position.
Result<TokenBatch> MakeShiftedBatch(const std::vector<std::vector<int32_t>>& sequences,
                                    const model::ModelConfig& cfg);
// Rows of several sequences packed end to end: segments[b] lists row b's sequence lengths (they sum
// to its length). Inputs and targets as MakeShiftedBatch's, except that a target starting the next
// sequence has no mask (nothing before it in its sequence), positions restart at each sequence, and
// segment_ids keep each token's attention inside its own.
Result<TokenBatch> MakePackedBatch(const std::vector<std::vector<int32_t>>& rows,
                                   const std::vector<std::vector<int64_t>>& segments,
                                   const model::ModelConfig& cfg);
// Builds from explicit inputs and targets of equal length per row (Tinker's Datum layout).
Result<TokenBatch> MakeBatch(const std::vector<std::vector<int32_t>>& inputs,
                             const std::vector<std::vector<int32_t>>& targets,
                             const model::ModelConfig& cfg);

// The same from per-row target tensors, each (T_b,) or (T_b, K_b) int64 (K_b targets per
// position). With any 2-D row, `targets` is (B, T, K) for the largest K_b.
Result<TokenBatch> MakeBatch(const std::vector<std::vector<int32_t>>& inputs,
                             const std::vector<at::Tensor>& targets, const model::ModelConfig& cfg);

// log p(target | prefix) per position (B, T), or (B, T, K) for (B, T, K) targets; fp32; zero where
// mask is 0.
at::Tensor TargetLogprobs(const model::Transformer& model, const TokenBatch& batch,
                          const model::LoraBatch* lora = nullptr, bool checkpoint_layers = false);

}  // namespace openrl::engine
