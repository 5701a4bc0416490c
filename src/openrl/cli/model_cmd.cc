// `openrl model info DIR`, `openrl generate`, `openrl logprobs`: the model engine from the
// command line. generate and logprobs are JSON-lines filters (stdin → stdout).
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <filesystem>
#include <iostream>

#include "openrl/cli/command.h"
#include "openrl/cli/model_loading.h"
#include "openrl/cli/profiling.h"
#include "openrl/engine/forward.h"
#include "openrl/engine/sampler.h"
#include "openrl/model/gguf_import.h"
#include "openrl/model/peft_io.h"

namespace openrl::cli {
namespace {

namespace stdfs = std::filesystem;

// The architecture of a model directory, or of a GGUF file read from its metadata alone.
Result<Json> ModelInfoJson(const std::string& path) {
  if (model::IsGgufFile(path)) {
    OPENRL_ASSIGN_OR_RETURN(auto file, formats::gguf::GgufFile::Open(path));
    OPENRL_ASSIGN_OR_RETURN(Json cfg_json, model::ConfigJsonFromGguf(*file));
    OPENRL_ASSIGN_OR_RETURN(auto cfg, model::ModelConfig::FromJson(cfg_json, path));
    return Json{{"path", path}, {"format", "gguf"}, {"family", model::FamilyName(cfg.family)},
                {"parameters", cfg.NumParameters()}, {"config", cfg.ToJson()},
                {"has_tokenizer", file->metadata().Contains("tokenizer.ggml.tokens")},
                {"has_chat_template", file->metadata().Contains("tokenizer.chat_template")}};
  }
  OPENRL_ASSIGN_OR_RETURN(auto cfg, model::ReadModelConfig(path));
  return Json{{"path", path}, {"format", "huggingface"}, {"family", model::FamilyName(cfg.family)},
              {"parameters", cfg.NumParameters()}, {"config", cfg.ToJson()},
              {"has_tokenizer", stdfs::exists(stdfs::path(path) / "tokenizer.json")},
              {"has_chat_template", stdfs::exists(stdfs::path(path) / "tokenizer_config.json")}};
}

int ModelInfo(const std::string& dir) {
  auto out = ModelInfoJson(dir);
  if (!out.ok()) return PrintError(out.status());
  std::cout << out->dump(2) << "\n";
  return 0;
}

Result<engine::SamplingParams> ParseSampling(const Json& req, const LoadedModel& m) {
  engine::SamplingParams p;
  const std::string src = "request";
  OPENRL_ASSIGN_OR_RETURN(p.max_tokens, GetFieldOr<int64_t>(req, "max_tokens", 64, src));
  OPENRL_ASSIGN_OR_RETURN(p.temperature, GetFieldOr<double>(req, "temperature", 1.0, src));
  OPENRL_ASSIGN_OR_RETURN(p.top_p, GetFieldOr<double>(req, "top_p", 1.0, src));
  OPENRL_ASSIGN_OR_RETURN(p.top_k, GetFieldOr<int64_t>(req, "top_k", 0, src));
  OPENRL_ASSIGN_OR_RETURN(p.min_p, GetFieldOr<double>(req, "min_p", 0.0, src));
  OPENRL_ASSIGN_OR_RETURN(p.top_logprobs, GetFieldOr<int64_t>(req, "logprobs", 0, src));
  OPENRL_ASSIGN_OR_RETURN(p.prompt_top_logprobs, GetFieldOr<int64_t>(req, "prompt_logprobs", -1, src));
  p.prompt_logprobs = p.prompt_top_logprobs >= 0;
  p.prompt_top_logprobs = std::max<int64_t>(p.prompt_top_logprobs, 0);
  if (req.contains("seed") && !req["seed"].is_null()) {
    OPENRL_ASSIGN_OR_RETURN(int64_t seed, GetField<int64_t>(req, "seed", src));
    p.seed = static_cast<uint64_t>(seed);
  }
  if (req.value("ignore_eos", false) == false)
    for (auto id : m.eos_ids) p.stop_token_ids.push_back(id);
  if (req.contains("stop")) {
    const Json& s = req["stop"];
    if (s.is_string()) p.stop_strings.push_back(s);
    else if (s.is_array())
      for (const Json& x : s) {
        if (x.is_string()) p.stop_strings.push_back(x);
        else if (x.is_number_integer()) p.stop_token_ids.push_back(x.get<int64_t>());
        else return InvalidArgument("request: field 'stop' must hold strings or token ids");
      }
    else if (!s.is_null()) return InvalidArgument("request: field 'stop' must be a string or a list");
  }
  return p;
}

Json AltsToJson(const std::vector<engine::TokenLogprob>& alts) {
  Json a = Json::array();
  for (const auto& t : alts) a.push_back({t.id, t.logprob});
  return a;
}

// Prompts of one request: a list of token lists (a ragged batch) or one prompt.
Result<std::vector<std::vector<int32_t>>> Prompts(const LoadedModel& m, const Json& req) {
  const Json& pt = req.contains("prompt_tokens") ? req["prompt_tokens"] : Json();
  if (pt.is_array() && !pt.empty() && pt[0].is_array()) {
    std::vector<std::vector<int32_t>> out;
    for (size_t i = 0; i < pt.size(); ++i) {
      Json one = {{"prompt_tokens", pt[i]}};
      auto ids = PromptTokens(m, one);
      if (!ids.ok()) return ids.status().WithContext("prompt_tokens[" + std::to_string(i) + "]");
      out.push_back(std::move(ids).value());
    }
    return out;
  }
  OPENRL_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, PromptTokens(m, req));
  return std::vector<std::vector<int32_t>>{prompt};
}

Result<Json> GenerateOne(const LoadedModel& m, const Json& req) {
  OPENRL_ASSIGN_OR_RETURN(auto prompts, Prompts(m, req));
  const std::vector<int32_t>& prompt = prompts[0];
  OPENRL_ASSIGN_OR_RETURN(engine::SamplingParams params, ParseSampling(req, m));
  OPENRL_ASSIGN_OR_RETURN(int64_t n, GetFieldOr<int64_t>(req, "n", 1, "request"));
  if (n < 1 || n > 1024) return InvalidArgument("request: field 'n' must be in [1, 1024]");
  std::vector<engine::SampleRequest> batch;
  for (const auto& p : prompts) {
    for (int64_t i = 0; i < n; ++i) {
      engine::SampleRequest r{p, params, m.adapter.get()};
      if (params.seed) r.params.seed = *params.seed + i;
      batch.push_back(std::move(r));
    }
  }
  OPENRL_ASSIGN_OR_RETURN(auto results, engine::Generate(*m.model, batch, m.tokenizer.get()));
  Json samples = Json::array();
  for (const auto& r : results) {
    Json s = {{"tokens", r.tokens}, {"logprobs", r.logprobs}, {"finish_reason", r.finish_reason}};
    if (m.tokenizer) s["text"] = m.tokenizer->Decode(r.tokens, /*skip_special_tokens=*/true);
    if (params.top_logprobs > 0) {
      Json tops = Json::array();
      for (const auto& alts : r.top_logprobs) tops.push_back(AltsToJson(alts));
      s["top_logprobs"] = tops;
    }
    samples.push_back(s);
  }
  Json out = {{"prompt_tokens", prompt}, {"samples", samples}};
  if (params.prompt_logprobs) {
    Json plp = Json::array();
    for (const auto& v : results[0].prompt_logprobs) plp.push_back(v ? Json(*v) : Json());
    out["prompt_logprobs"] = plp;
    if (params.prompt_top_logprobs > 0) {
      Json tops = Json::array();
      for (const auto& alts : results[0].prompt_top_logprobs) tops.push_back(AltsToJson(alts));
      out["prompt_top_logprobs"] = tops;
    }
  }
  return out;
}

Result<Json> LogprobsOne(const LoadedModel& m, const Json& req) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                          TokenIdList(req, "tokens", m.model->config().vocab_size));
  if (tokens.empty()) return InvalidArgument("request: field 'tokens' is empty");
  Json lps = Json::array({nullptr});
  if (tokens.size() == 1) return Json{{"logprobs", lps}};
  OPENRL_ASSIGN_OR_RETURN(auto batch, engine::MakeShiftedBatch({tokens}, m.model->config()));
  at::NoGradGuard no_grad;
  model::LoraBatch lora;
  if (m.adapter) lora.groups.push_back({m.adapter.get(), {}});
  Json out;
  try {
    // Read on the host: one copy off the device instead of a sync per token.
    at::Tensor lp = engine::TargetLogprobs(*m.model, batch, m.adapter ? &lora : nullptr).to(at::kCPU);
    for (int64_t t = 0; t < lp.size(1); ++t) lps.push_back(lp[0][t].item<double>());
    out["logprobs"] = lps;
    if (req.value("return_logits", false)) {
      model::ForwardArgs args;
      args.input_ids = at::tensor(std::vector<int64_t>(tokens.begin(), tokens.end()), at::kLong).view({1, -1});
      args.lora = m.adapter ? &lora : nullptr;
      at::Tensor logits = m.model->Logits(m.model->Hidden(args), args.lora)[0].to(at::kCPU).contiguous();
      std::vector<std::vector<float>> rows(logits.size(0));
      for (int64_t t = 0; t < logits.size(0); ++t) {
        const float* p = logits[t].data_ptr<float>();
        rows[t].assign(p, p + logits.size(1));
      }
      out["logits"] = rows;
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "logprobs");
  }
  return out;
}

int MergeToDir(const ModelOptions& opts, const std::string& out) {
  auto loaded = LoadModelForCli(opts);
  if (!loaded.ok()) return PrintError(loaded.status());
  auto& m = *loaded;
  if (auto st = model::MergeAdapter(*m.dir.model, *m.adapter); !st.ok()) return PrintError(st);
  auto dtype = model::ParseDtype(opts.dtype);
  model::SaveOptions so{*dtype, 2'000'000'000, m.dir.path,
                        m.dir.generation_config.empty() ? Json() : m.dir.generation_config};
  if (auto st = model::SaveModelDir(*m.dir.model, out, so); !st.ok()) return PrintError(st);
  std::cout << Json{{"merged", out}, {"adapter", opts.adapter_dir}}.dump() << "\n";
  return 0;
}

void Install(CLI::App& app) {
  auto* model = app.add_subcommand("model", "Inspect, merge, import (GGUF), export (GGUF) and register (add) models");
  model->alias("models");
  model->require_subcommand(1);
  InstallGgufCommands(model);
  InstallRegistryCommands(model);
  auto* info = model->add_subcommand("info", "Print a model directory's architecture as JSON");
  auto dir = std::make_shared<std::string>();
  info->add_option("MODEL", *dir, "Hugging Face model directory or GGUF file")->required();
  info->callback([dir] { SetExitCode(ModelInfo(*dir)); });

  auto* merge = model->add_subcommand("merge", "Merge a LoRA adapter into the base and write a Hugging Face directory");
  auto mopts = std::make_shared<ModelOptions>();
  auto out_dir = std::make_shared<std::string>();
  AddModelOptions(merge, *mopts);
  merge->add_option("--out", *out_dir, "output model directory")->required();
  merge->callback([mopts, out_dir] {
    if (mopts->adapter_dir.empty()) return SetExitCode(PrintError(InvalidArgument("merge: --adapter is required")));
    SetExitCode(MergeToDir(*mopts, *out_dir));
  });

  for (auto [name, help, fn] :
       {std::tuple{"generate",
                   "Sample completions. stdin: {\"prompt\"|\"prompt_tokens\"|\"messages\", \"max_tokens\", "
                   "\"temperature\", \"top_p\", \"top_k\", \"min_p\", \"seed\", \"stop\", \"n\", \"logprobs\", "
                   "\"prompt_logprobs\"} per line",
                   &GenerateOne},
        {"logprobs",
         "Per-token log-probabilities. stdin: {\"tokens\": [...]} → {\"logprobs\": [null, ...]} per line",
         &LogprobsOne}}) {
    auto* sub = app.add_subcommand(name, help);
    auto opts = std::make_shared<ModelOptions>();
    auto profile = std::make_shared<std::string>();
    AddModelOptions(sub, *opts);
    sub->add_option("--profile", *profile, "write a Chrome trace of the requests' ops (libtorch profiler)");
    auto handler = fn;
    sub->callback([opts, profile, handler] {
      auto loaded = LoadModelForCli(*opts);
      if (!loaded.ok()) return SetExitCode(PrintError(loaded.status()));
      const LoadedModel& m = *loaded;
      if (!profile->empty()) StartProfiler();
      SetExitCode(RunJsonLines([&](const Json& req) { return handler(m, req); }));
      if (!profile->empty()) {
        if (auto st = StopProfiler(*profile); !st.ok()) SetExitCode(PrintError(st));
      }
    });
  }
}

}  // namespace

OPENRL_CLI_COMMAND("model", Install);

}  // namespace openrl::cli
