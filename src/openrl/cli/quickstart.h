// Shared pieces of `openrl quickstart`: printf-style formatting (fmt's headers inside libtorch
// shadow the system fmt in these files) and the training loop with a progress bar.
#pragma once

#include <functional>

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

// The arithmetic task of the SmolLM2 quickstart and its rule.
struct Problem {
  std::string question;
  int64_t answer = 0;
};
struct Verdict {
  bool format = false;  // the whole reply is <answer>N</answer>
  bool number = false;  // N (or the last integer of a free-form reply) is right
};
Verdict Check(const std::string& reply, int64_t answer);

// Stage 6: RL through the training API. An in-process `openrl serve` (Tinker API, data under
// `workdir`/api) serves `model_dir` as a base model; a client samples a group of answers for each
// question of a fixed RL set, rewards them with Check, and trains a fresh LoRA with the
// importance_sampling loss (group-relative advantages).
struct RlOptions {
  std::string model_dir;  // Hugging Face directory to serve as the base
  std::string workdir;
  int64_t iterations = 12;
  int64_t prompts = 16;  // training questions per iteration, the next ones each time (wrapping around)
  int64_t group = 4;     // samples per question
  int64_t rank = 8;
  double lr = 5e-4;
  int32_t eos = 0;
};
struct RlResult {
  std::vector<double> rewards;  // mean reward per iteration
  double before = 0, after = 0;  // held-out "right number in format" (greedy, via the API), %
  double seconds = 0;
  std::string checkpoint;        // tinker:// path of the final state
  std::string adapter_dir;       // the tuned adapter, exported and downloaded (PEFT layout)
  std::vector<std::string> adapter_files;
};
// `prompt_ids` renders a problem's prompt; `decode` turns reply tokens into text.
Result<RlResult> RunRlThroughApi(const RlOptions& o, const std::vector<Problem>& train, const std::vector<Problem>& eval,
                                 const std::function<Result<std::vector<int32_t>>(const Problem&)>& prompt_ids,
                                 const std::function<std::string(const std::vector<int32_t>&)>& decode);

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
