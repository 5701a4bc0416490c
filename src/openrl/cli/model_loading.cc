#include "openrl/cli/model_loading.h"

#include <ATen/Parallel.h>

#include <filesystem>

#include "openrl/cli/command.h"
#include "openrl/model/gguf_import.h"
#include "openrl/model/peft_io.h"

namespace openrl::cli {

void AddModelOptions(CLI::App* sub, ModelOptions& opts) {
  sub->add_option("--model", opts.model_dir, "Hugging Face model directory or GGUF file")->required();
  sub->add_option("--adapter", opts.adapter_dir, "PEFT LoRA adapter directory");
  sub->add_option("--dtype", opts.dtype, "float32 | bfloat16 | float16")->capture_default_str();
  sub->add_option("--threads", opts.threads, "CPU threads (0 = all cores)");
  sub->add_option("--device", opts.device, "cpu | cuda | cuda:N")->capture_default_str();
}

Result<LoadedModel> LoadModelForCli(const ModelOptions& opts, bool weights) {
  if (opts.threads > 0) at::set_num_threads(opts.threads);
  LoadedModel m;
  // Flags are checked before anything is read.
  OPENRL_RETURN_IF_ERROR(model::ParseDtype(opts.dtype).status());
  OPENRL_RETURN_IF_ERROR(model::ParseDevice(opts.device).status());
  std::string dir = opts.model_dir;
  if (model::IsGgufFile(dir)) {
    OPENRL_ASSIGN_OR_RETURN(dir, model::ImportGgufCached(dir));
  }
  model::LoadOptions files_only;
  files_only.weights = false;
  OPENRL_ASSIGN_OR_RETURN(m.dir, model::LoadModelDir(dir, files_only));
  namespace stdfs = std::filesystem;
  if (stdfs::exists(stdfs::path(dir) / "tokenizer.json")) {
    OPENRL_ASSIGN_OR_RETURN(m.tokenizer, tokenizer::Tokenizer::FromDirectory(dir));
  }
  if (stdfs::exists(stdfs::path(dir) / "tokenizer_config.json")) {
    auto t = chat::ChatTemplate::FromDirectory(dir);
    if (t.ok()) m.chat_template = std::move(t).value();
  }
  m.eos_ids = model::StopTokenIds(m.dir);
  if (weights) OPENRL_RETURN_IF_ERROR(LoadWeightsForCli(m, opts));
  return m;
}

Status LoadWeightsForCli(LoadedModel& m, const ModelOptions& opts) {
  OPENRL_ASSIGN_OR_RETURN(at::ScalarType dtype, model::ParseDtype(opts.dtype));
  OPENRL_ASSIGN_OR_RETURN(at::Device device, model::ParseDevice(opts.device));
  OPENRL_ASSIGN_OR_RETURN(m.dir, model::LoadModelDir(m.dir.path, {dtype, device}));
  m.model = m.dir.model.get();
  if (!opts.adapter_dir.empty()) {
    at::ScalarType adapter_dtype = opts.fp32_adapter ? at::kFloat : dtype;
    OPENRL_ASSIGN_OR_RETURN(m.adapter,
                            model::LoadPeftAdapter(opts.adapter_dir, m.dir.config, adapter_dtype, device));
  }
  return Status::Ok();
}

Result<std::vector<int32_t>> PromptTokens(const LoadedModel& m, const Json& req) {
  if (req.contains("prompt_tokens")) return TokenIdList(req, "prompt_tokens", m.model->config().vocab_size);
  if (!m.tokenizer) return InvalidArgument("request: the model directory has no tokenizer.json; send 'prompt_tokens'");
  if (req.contains("messages")) {
    if (!m.chat_template) return InvalidArgument("request: the model directory has no chat template");
    OPENRL_ASSIGN_OR_RETURN(std::string text,
                            m.chat_template->Render(req["messages"], true, req.value("tools", Json())));
    return m.tokenizer->Encode(text, /*add_special_tokens=*/false);
  }
  OPENRL_ASSIGN_OR_RETURN(std::string prompt, GetField<std::string>(req, "prompt", "request"));
  return m.tokenizer->Encode(prompt, req.value("add_special_tokens", true));
}

}  // namespace openrl::cli
