// Shared pieces of `openrl quickstart`: printf-style formatting (fmt's headers inside libtorch
// shadow the system fmt in these files) and the training loop with a progress bar.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/engine/trainer.h"

namespace openrl::cli::quickstart {

std::string Format(const char* f, ...) __attribute__((format(printf, 1, 2)));

struct LoopOptions {
  int64_t steps = 100;
  int64_t batch = 8;
  double lr = 1e-3;
  std::string label = "train";
};
struct LoopResult {
  double loss = 0;       // moving average at the end
  double tokens_per_second = 0;
};
// Steps over shuffled rows (reshuffled each epoch) with linear warm-up over 5% of the steps and
// cosine decay to 10%. `loss_from` (empty, or one entry per row) masks each row's prompt.
Result<LoopResult> TrainLoop(engine::Trainer& trainer, const std::vector<std::vector<int32_t>>& rows,
                             const std::vector<int64_t>& loss_from, const LoopOptions& o);

// The tiny from-scratch loop (quickstart --tiny): BPE tokenizer, a Llama trained on additions,
// then a subtraction LoRA.
struct TinyOptions {
  std::string data_dir = "data/quickstart";
  std::string workdir = "var/quickstart";
  int64_t pretrain_steps = 800;
  int64_t lora_steps = 800;
  bool fresh = false;
};
int RunTiny(const TinyOptions& o);

}  // namespace openrl::cli::quickstart
