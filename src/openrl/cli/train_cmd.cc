// `openrl train`: supervised fine-tuning of a model directory on a JSONL dataset, with LoRA
// (default) or full fine-tuning. One JSON line per step on stdout; the result is a PEFT
// adapter directory (LoRA) or a Hugging Face model directory (full).
#include <ATen/Parallel.h>

#include <fstream>
#include <iostream>
#include <random>

#include "openrl/cli/command.h"
#include "openrl/cli/model_loading.h"
#include "openrl/cli/profiling.h"
#include "openrl/engine/trainer.h"
#include "openrl/model/peft_io.h"

namespace openrl::cli {
namespace {

struct TrainOptions {
  ModelOptions model;
  std::string data;
  std::string out;
  std::string dump_grads;
  std::string profile;
  int64_t lora_rank = 8;
  double lora_alpha = 16;
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  int64_t steps = 10;
  int64_t batch_size = 8;
  int64_t micro_batch = 8;
  double lr = 1e-4, weight_decay = 0.0, clip = 1.0, beta2 = 0.999, eps = 1e-8;
  uint64_t seed = 0;
  bool checkpoint = false;
};

// Each line: {"tokens": [...]} or {"text": "..."} or {"messages": [...]}.
Result<std::vector<std::vector<int32_t>>> ReadDataset(const std::string& path, const LoadedModel& m) {
  std::ifstream in(path);
  if (!in) return NotFound(path + ": cannot open dataset");
  std::vector<std::vector<int32_t>> rows;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = path + ":" + std::to_string(n);
    OPENRL_ASSIGN_OR_RETURN(Json j, ParseJson(line, where));
    std::vector<int32_t> ids;
    if (j.contains("tokens")) {
      auto r = TokenIdList(j, "tokens", m.model->config().vocab_size, "");
      if (!r.ok()) return r.status().WithContext(where);
      ids = std::move(r).value();
    } else if (j.contains("messages")) {
      if (!m.chat_template || !m.tokenizer) return InvalidArgument(where + ": 'messages' needs a tokenizer and chat template");
      auto text = m.chat_template->Render(j["messages"], false);
      if (!text.ok()) return text.status().WithContext(where);
      ids = m.tokenizer->Encode(*text, false);
    } else {
      auto text = GetField<std::string>(j, "text", where);
      if (!text.ok()) return InvalidArgument(where + ": each line needs 'tokens', 'text' or 'messages'");
      if (!m.tokenizer) return InvalidArgument(where + ": 'text' needs tokenizer.json in the model directory");
      ids = m.tokenizer->Encode(*text, true);
      if (m.model->config().eos_token_ids.size() > 0) ids.push_back(m.model->config().eos_token_ids[0]);
    }
    if (ids.size() < 2) return InvalidArgument(where + ": a training example needs at least 2 tokens");
    for (size_t t = 0; t < ids.size(); ++t)
      if (ids[t] < 0 || ids[t] >= m.model->config().vocab_size)
        return InvalidArgument(where + ": token " + std::to_string(t) + " = " + std::to_string(ids[t]) +
                               " is outside the vocabulary (size " + std::to_string(m.model->config().vocab_size) + ")");
    rows.push_back(std::move(ids));
  }
  if (rows.empty()) return InvalidArgument(path + ": dataset is empty");
  return rows;
}

int RunTrain(const TrainOptions& o) {
  ModelOptions model_opts = o.model;
  model_opts.fp32_adapter = true;  // trained adapters and their AdamW state stay fp32, as in PEFT
  auto loaded = LoadModelForCli(model_opts);
  if (!loaded.ok()) return PrintError(loaded.status());
  LoadedModel& m = *loaded;
  auto data = ReadDataset(o.data, m);
  if (!data.ok()) return PrintError(data.status());
  model::Transformer& base = *m.dir.model;
  std::unique_ptr<model::LoraAdapter> fresh;
  model::LoraAdapter* adapter = m.adapter.get();
  if (o.lora_rank < 0) return PrintError(InvalidArgument("--lora-rank must be >= 0 (0 = full fine-tuning)"));
  if (o.micro_batch < 1 || o.batch_size < 1) return PrintError(InvalidArgument("--batch-size and --micro-batch must be >= 1"));
  if (!adapter && o.lora_rank > 0) {
    model::LoraConfig lc;
    lc.rank = o.lora_rank;
    lc.alpha = o.lora_alpha;
    lc.targets.clear();
    for (const auto& t : o.targets) {
      auto k = model::LinearFromName(t);
      if (!k) return PrintError(InvalidArgument("--targets: unknown module '" + t + "'"));
      lc.targets.insert(*k);
    }
    if (auto st = lc.Validate(); !st.ok()) return PrintError(st);
    // The adapter (trainable, with its AdamW state) stays fp32 over a bf16/fp16 base, as PEFT does.
    fresh = model::LoraAdapter::Create(base.config(), lc, at::kFloat, base.device(), o.seed);
    adapter = fresh.get();
  }
  // MFU is reported against this machine's measured fp32 matmul throughput.
  double peak = base.device().is_cpu() ? engine::MeasureMatmulPeak(1024, 4) : 0;
  engine::Trainer trainer(base, adapter, {o.micro_batch, o.checkpoint, peak});
  engine::AdamParams hp{o.lr, 0.9, o.beta2, o.eps, o.weight_decay, o.clip};
  at::manual_seed(o.seed);  // LoRA dropout draws from the default generator
  const auto& rows = *data;
  for (int64_t step = 0; step < o.steps; ++step) {
    std::vector<std::vector<int32_t>> batch;
    for (int64_t i = 0; i < o.batch_size; ++i) batch.push_back(rows[(step * o.batch_size + i) % rows.size()]);
    Result<engine::StepReport> rep = InvalidArgument("unreachable");
    bool profiled = !o.profile.empty() && step == o.steps - 1;
    if (profiled) StartProfiler();
    if (step == 0 && !o.dump_grads.empty()) {
      rep = trainer.ForwardBackward(batch);
      if (!rep.ok()) return PrintError(rep.status());
      std::vector<std::pair<std::string, at::Tensor>> grads;
      auto named = adapter ? adapter->NamedTensors() : base.NamedParameters();
      for (auto& [name, t] : named) grads.emplace_back(name, t.grad().defined() ? t.grad() : at::zeros_like(t));
      if (auto st = model::WriteTensors(grads, o.dump_grads, {}); !st.ok()) return PrintError(st);
      auto st = trainer.optimizer().Step(hp);
      if (!st.ok()) return PrintError(st.status());
      rep->grad_norm = st->grad_norm;
    } else {
      rep = trainer.Step(batch, hp);
      if (!rep.ok()) return PrintError(rep.status());
    }
    if (profiled) {
      if (auto st = StopProfiler(o.profile); !st.ok()) return PrintError(st);
    }
    Json line = {{"step", step + 1}, {"loss", rep->loss}, {"grad_norm", rep->grad_norm},
                 {"tokens", rep->tokens}, {"tokens_per_second", rep->tokens_per_second}};
    if (peak > 0) line["mfu"] = rep->mfu;
    std::cout << line.dump() << "\n" << std::flush;
  }
  if (!o.out.empty()) {
    Status st = adapter ? model::SavePeftAdapter(*adapter, o.out, o.model.model_dir)
                        : model::SaveModelDir(base, o.out, {base.dtype(), 2'000'000'000, o.model.model_dir,
                                                            m.dir.generation_config.empty() ? Json() : m.dir.generation_config});
    if (!st.ok()) return PrintError(st);
  }
  return 0;
}

void Install(CLI::App& app) {
  auto* sub = app.add_subcommand("train", "Supervised fine-tuning (LoRA or full) on a JSONL dataset");
  auto o = std::make_shared<TrainOptions>();
  AddModelOptions(sub, o->model);
  sub->add_option("--data", o->data, "JSONL: {\"tokens\"}, {\"text\"} or {\"messages\"} per line")->required();
  sub->add_option("--out", o->out, "output: PEFT adapter dir (LoRA) or model dir (full)");
  sub->add_option("--lora-rank", o->lora_rank, "LoRA rank; 0 = full fine-tuning")->capture_default_str();
  sub->add_option("--lora-alpha", o->lora_alpha, "LoRA alpha")->capture_default_str();
  sub->add_option("--targets", o->targets, "LoRA target modules")->capture_default_str();
  sub->add_option("--steps", o->steps, "optimizer steps")->capture_default_str();
  sub->add_option("--batch-size", o->batch_size, "sequences per step")->capture_default_str();
  sub->add_option("--micro-batch", o->micro_batch, "sequences per forward/backward (accumulation)")->capture_default_str();
  sub->add_option("--lr", o->lr, "AdamW learning rate")->capture_default_str();
  sub->add_option("--weight-decay", o->weight_decay, "AdamW weight decay")->capture_default_str();
  sub->add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
  sub->add_option("--eps", o->eps, "AdamW epsilon")->capture_default_str();
  sub->add_option("--clip", o->clip, "gradient-norm clip (0 = off)")->capture_default_str();
  sub->add_option("--seed", o->seed, "seed for LoRA init and dropout (rows are taken in file order)")->capture_default_str();
  sub->add_flag("--checkpoint-activations", o->checkpoint, "recompute layers in backward to save memory");
  sub->add_option("--profile", o->profile, "write a Chrome trace of the last step's ops (libtorch profiler)");
  sub->add_option("--dump-grads", o->dump_grads, "write the first step's gradients as safetensors");
  sub->callback([o] { SetExitCode(RunTrain(*o)); });
}

}  // namespace

OPENRL_CLI_COMMAND("train", Install);

}  // namespace openrl::cli
