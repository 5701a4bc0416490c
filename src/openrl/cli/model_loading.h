// Loading a model (and optionally an adapter, tokenizer and chat template) for CLI commands.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/model/checkpoint.h"
#include "openrl/model/lora.h"
#include "openrl/template/chat_template.h"
#include "openrl/tokenizer/tokenizer.h"

namespace openrl::cli {

struct ModelOptions {
  std::string model_dir;
  std::string adapter_dir;
  std::string dtype = "float32";
  std::string device = "cpu";
  int threads = 0;
  bool fp32_adapter = false;  // load --adapter in fp32 whatever --dtype (training keeps adapters fp32)
};

struct LoadedModel {
  model::ModelDir dir;
  const model::Transformer* model = nullptr;
  std::unique_ptr<model::LoraAdapter> adapter;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null when the directory has none
  std::optional<chat::ChatTemplate> chat_template;
  std::vector<int64_t> eos_ids;
};

// --model takes a Hugging Face directory or a GGUF file (imported once into a cache).
void AddModelOptions(CLI::App* sub, ModelOptions& opts);
// With `weights` false, only config.json, generation_config.json, the tokenizer and the chat
// template are read (`model` stays null) until LoadWeightsForCli: a command can check its input
// before it spends the time and memory of the weights.
Result<LoadedModel> LoadModelForCli(const ModelOptions& opts, bool weights = true);
Status LoadWeightsForCli(LoadedModel& m, const ModelOptions& opts);

// Prompt ids from {"prompt_tokens"}, {"prompt"} (tokenized) or {"messages"} (chat template).
Result<std::vector<int32_t>> PromptTokens(const LoadedModel& m, const Json& req);

// `openrl model import` and `openrl model export` (model_gguf_cmd.cc).
void InstallGgufCommands(CLI::App* model);
// `openrl model add|list`: base models registered for `openrl serve` (registry_cmd.cc).
void InstallRegistryCommands(CLI::App* model);

}  // namespace openrl::cli
