// `openrl train`: supervised fine-tuning of a model directory on a JSONL dataset (formats in
// engine/sft_data.h: tokens, text, prompt/completion, chat messages with assistant-only loss), with
// LoRA (default) or full fine-tuning; for --steps or --epochs, in file or shuffled order, with a
// learning-rate schedule, held-out evaluation, and checkpoints a run resumes from exactly. One JSON line per
// step (and per evaluation) on stdout, a progress bar on stderr; the result is a PEFT adapter directory
// (LoRA) or a Hugging Face model directory (full).
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>

#include "openrl/cli/command.h"
#include "openrl/cli/model_loading.h"
#include "openrl/cli/profiling.h"
#include "openrl/core/crypto.h"
#include "openrl/core/fs.h"
#include "openrl/core/progress.h"
#include "openrl/engine/lr_schedule.h"
#include "openrl/engine/sft_data.h"
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
  double lora_dropout = 0;
  bool rslora = false;
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  int64_t steps = 10;
  double epochs = 0;  // > 0: the steps that pass over the dataset this many times
  bool shuffle = false;
  std::string lr_schedule = "constant";
  int64_t warmup_steps = 0;
  std::string eval_data;
  int64_t eval_every = 0;  // 0: before the first step and after the last only
  int64_t save_every = 0;  // > 0: <out>/checkpoint-<step> every this many steps
  int64_t max_length = 0;  // 0: the model's context
  bool truncate = false;
  bool packing = false;    // examples packed into rows of --max-length tokens
  std::string resume;      // a checkpoint directory to go on from
  int64_t batch_size = 8;
  int64_t micro_batch = 8;
  double lr = 1e-4, weight_decay = 0.0, clip = 1.0, beta2 = 0.999, eps = 1e-8;
  uint64_t seed = 0;
  bool checkpoint = false;
  std::string train_on = "assistant";
  bool print_examples = false;
};

// What identifies the --model a run trains over, for --resume's check: config.json, and per weight
// file (*.safetensors in a directory, or the GGUF file itself) its name, size and its first and last
// MiB. Hashing whole weights would read gigabytes; two bases of one shape differ in those bytes.
Result<std::string> ModelFingerprint(const std::string& path) {
  namespace stdfs = std::filesystem;
  std::vector<stdfs::path> files;
  std::string manifest;
  std::error_code ec;
  if (stdfs::is_directory(path, ec)) {
    OPENRL_ASSIGN_OR_RETURN(std::string config, fs::ReadFile(path + "/config.json"));
    manifest = "config.json " + crypto::Sha256Hex(config) + "\n";
    for (const auto& e : stdfs::directory_iterator(path, ec))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path());
    if (ec) return InvalidArgument(path + ": " + ec.message());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  constexpr std::streamoff kEdge = 1 << 20;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return NotFound(f.string() + ": cannot be read");
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    std::string edges(static_cast<size_t>(std::min(size, 2 * kEdge)), '\0');
    const std::streamoff head = std::min(size, kEdge),
                         tail = static_cast<std::streamoff>(edges.size()) - head;
    in.seekg(0);
    in.read(edges.data(), head);
    in.seekg(size - tail);
    in.read(edges.data() + head, tail);
    if (!in) return InvalidArgument(f.string() + ": read failed");
    manifest += f.filename().string() + " " + std::to_string(size) + " " + crypto::Sha256Hex(edges) + "\n";
  }
  return crypto::Sha256Hex(manifest);
}

int RunTrain(const TrainOptions& o) {
  if (o.lora_rank < 0) return PrintError(InvalidArgument("--lora-rank must be >= 0 (0 = full fine-tuning)"));
  if (o.micro_batch < 1 || o.batch_size < 1)
    return PrintError(InvalidArgument("--batch-size and --micro-batch must be >= 1"));
  if (o.steps < 0)
    return PrintError(InvalidArgument("--steps must be >= 0 (0: write the untrained adapter)"));
  if (!(o.epochs >= 0) || !std::isfinite(o.epochs))
    return PrintError(InvalidArgument("--epochs must be >= 0 (0 = run --steps)"));
  if (o.warmup_steps < 0) return PrintError(InvalidArgument("--warmup-steps must be >= 0"));
  if (o.eval_every < 0)
    return PrintError(InvalidArgument("--eval-every must be >= 0 (0 = first and last step only)"));
  if (o.eval_every > 0 && o.eval_data.empty())
    return PrintError(InvalidArgument("--eval-every needs --eval-data"));
  if (o.save_every < 0) return PrintError(InvalidArgument("--save-every must be >= 0 (0 = no checkpoints)"));
  if (o.save_every > 0 && o.out.empty()) return PrintError(InvalidArgument("--save-every needs --out"));
  if (!o.resume.empty() && !o.model.adapter_dir.empty())
    return PrintError(InvalidArgument("--resume takes the adapter from the checkpoint; leave out --adapter"));
  Json resumed;  // the checkpoint's trainer_state.json
  if (!o.resume.empty()) {
    auto text = fs::ReadFile(o.resume + "/trainer_state.json");
    if (!text.ok())
      return PrintError(
          text.status().WithContext("--resume " + o.resume + " (a checkpoint-<step> directory)"));
    try {
      resumed = Json::parse(*text);
    } catch (const std::exception& e) {
      return PrintError(InvalidArgument(o.resume + "/trainer_state.json: " + e.what()));
    }
    if (!resumed.is_object() || !resumed.contains("step") || !resumed["step"].is_number_integer())
      return PrintError(InvalidArgument(o.resume + "/trainer_state.json: field 'step' must be an integer"));
  }
  auto schedule_kind = engine::ParseLrSchedule(o.lr_schedule);
  if (!schedule_kind.ok()) return PrintError(schedule_kind.status().WithContext("--lr-schedule"));
  auto train_on = engine::ParseTrainOn(o.train_on);
  if (!train_on.ok()) return PrintError(train_on.status().WithContext("--train-on"));
  ModelOptions model_opts = o.model;
  model_opts.fp32_adapter = true;  // trained adapters and their AdamW state stay fp32, as in PEFT
  // A LoRA checkpoint holds the adapter (over --model); a full fine-tuning one the whole model.
  if (!o.resume.empty()) {
    if (fs::Exists(o.resume + "/adapter_config.json"))
      model_opts.adapter_dir = o.resume;
    else
      model_opts.model_dir = o.resume;
  }
  // The dataset is read (and checked) with the tokenizer and config alone, before the weights.
  auto loaded = LoadModelForCli(model_opts, /*weights=*/false);
  if (!loaded.ok()) return PrintError(loaded.status());
  LoadedModel& m = *loaded;
  engine::SupervisedFormat fmt;
  fmt.tokenizer = m.tokenizer.get();
  fmt.chat_template = m.chat_template ? &*m.chat_template : nullptr;
  fmt.vocab_size = m.dir.config.vocab_size;
  // The EOS appended to text examples is the tokenizer's eos_token (tokenizer_config.json), as TRL's
  // SFTTrainer appends it; without one, the model's first stop id.
  if (m.tokenizer && m.tokenizer->eos_token_id()) {
    fmt.eos_id = *m.tokenizer->eos_token_id();
  } else if (!m.eos_ids.empty()) {
    fmt.eos_id = static_cast<int32_t>(m.eos_ids[0]);
  }
  fmt.train_on = *train_on;
  const int64_t context = m.dir.config.max_position_embeddings;
  if (o.max_length < 0)
    return PrintError(InvalidArgument("--max-length must be >= 0 (0 = the model's context)"));
  if (context > 0 && o.max_length > context)
    return PrintError(InvalidArgument("--max-length " + std::to_string(o.max_length) +
                                      " exceeds the model's context of " + std::to_string(context) +
                                      " tokens"));
  fmt.max_length = o.max_length > 0 ? o.max_length : context;
  fmt.truncate = o.truncate;
  if (o.packing && o.max_length == 0)
    return PrintError(InvalidArgument("--packing needs --max-length: the length of a packed row in tokens"));
  auto data = engine::ReadSupervisedJsonl(o.data, fmt, static_cast<size_t>(at::get_num_threads()));
  if (!data.ok()) return PrintError(data.status());
  if (o.packing) {
    const size_t examples = data->size();
    data = engine::PackExamples(std::move(data).value(), fmt.max_length);
    if (!data.ok()) return PrintError(data.status().WithContext(o.data));
    int64_t tokens = 0;
    for (const auto& row : *data) tokens += static_cast<int64_t>(row.tokens.size());
    std::fprintf(stderr, "packed %zu examples into %zu rows of at most %lld tokens (%.1f%% full)\n", examples,
                 data->size(), static_cast<long long>(fmt.max_length),
                 data->empty() ? 0.0
                               : 100.0 * static_cast<double>(tokens) /
                                     static_cast<double>(data->size() * fmt.max_length));
  }
  std::vector<engine::SupervisedExample> eval;
  if (!o.eval_data.empty() && !o.print_examples) {
    auto e = engine::ReadSupervisedJsonl(o.eval_data, fmt, static_cast<size_t>(at::get_num_threads()));
    if (!e.ok()) return PrintError(e.status());
    eval = std::move(e).value();
  }
  if (o.print_examples) {
    for (const auto& ex : *data) {
      Json line = {{"tokens", ex.tokens}, {"weights", ex.weights}};
      if (o.packing) line["segments"] = ex.segments;  // a packed row: its examples' lengths
      std::cout << line.dump() << "\n";
    }
    std::cout << std::flush;
    return 0;
  }
  if (auto st = LoadWeightsForCli(m, model_opts); !st.ok()) return PrintError(st);
  model::Transformer& base = *m.dir.model;
  std::unique_ptr<model::LoraAdapter> fresh;
  model::LoraAdapter* adapter = m.adapter.get();
  if (!adapter && o.lora_rank > 0) {
    model::LoraConfig lc;
    lc.rank = o.lora_rank;
    lc.alpha = o.lora_alpha;
    lc.dropout = o.lora_dropout;
    lc.use_rslora = o.rslora;
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
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t steps =
      o.epochs > 0
          ? std::max<int64_t>(
                1, static_cast<int64_t>(std::ceil(
                       o.epochs * static_cast<double>(n) / static_cast<double>(o.batch_size) - 1e-9)))
          : o.steps;
  engine::LrSchedule schedule{*schedule_kind, o.warmup_steps, steps};

  // What decides the rest of a run: a checkpoint resumes only a run with the same settings and data
  // (the data file is hashed, a second read of it, only when there are checkpoints).
  std::string data_hash, model_fingerprint;
  if (o.save_every > 0 || !o.resume.empty()) {
    auto hash = crypto::Sha256FileHex(o.data);
    if (!hash.ok()) return PrintError(hash.status());
    data_hash = *hash;
    auto fingerprint = ModelFingerprint(o.model.model_dir);
    if (!fingerprint.ok()) return PrintError(fingerprint.status().WithContext("--model"));
    model_fingerprint = *fingerprint;
  }
  Json run = {{"steps", steps},
              {"batch_size", o.batch_size},
              {"shuffle", o.shuffle},
              {"seed", o.seed},
              {"lr", o.lr},
              {"lr_schedule", o.lr_schedule},
              {"warmup_steps", o.warmup_steps},
              {"weight_decay", o.weight_decay},
              {"beta2", o.beta2},
              {"eps", o.eps},
              {"clip", o.clip},
              {"train_on", o.train_on},
              {"max_length", fmt.max_length},
              {"truncate", o.truncate},
              {"packing", o.packing},
              {"full_finetune", adapter == nullptr},
              {"rows", n},
              {"model_fingerprint", model_fingerprint},
              {"data_sha256", data_hash}};
  at::Generator cpu_rng = at::detail::getDefaultCPUGenerator();
  int64_t start = 0;
  if (!o.resume.empty()) {
    // The hashes last: a different row count or setting says more.
    std::vector<std::string> keys;
    for (const auto& [key, value] : run.items())
      if (key != "data_sha256" && key != "model_fingerprint") keys.push_back(key);
    keys.push_back("model_fingerprint");
    keys.push_back("data_sha256");
    for (const std::string& key : keys) {
      const Json& value = run[key];
      if (!resumed.contains(key) || resumed[key] != value)
        return PrintError(InvalidArgument(
            "--resume " + o.resume + ": the checkpoint's run had " + key + " = " +
            (resumed.contains(key) ? resumed[key].dump() : std::string("(none)")) + ", this one has " +
            value.dump() + " (resume with the settings and data it was trained with)"));
    }
    start = resumed["step"].get<int64_t>();
    if (start < 0 || start > steps)
      return PrintError(InvalidArgument(o.resume + "/trainer_state.json: step " + std::to_string(start) +
                                        " is outside 0.." + std::to_string(steps)));
    auto opt_state = model::ReadTensors(o.resume + "/optimizer.safetensors");
    if (!opt_state.ok()) return PrintError(opt_state.status());
    if (auto st = trainer.optimizer().LoadState(*opt_state); !st.ok())
      return PrintError(st.WithContext(o.resume + "/optimizer.safetensors"));
    auto rng = model::ReadTensors(o.resume + "/rng_state.safetensors");
    if (!rng.ok()) return PrintError(rng.status());
    if (rng->size() != 1)
      return PrintError(InvalidArgument(o.resume + "/rng_state.safetensors: expected one tensor"));
    try {
      std::lock_guard<std::mutex> lock(cpu_rng.mutex());
      cpu_rng.set_state((*rng)[0].second);
    } catch (const std::exception& e) {
      return PrintError(InvalidArgument(o.resume + "/rng_state.safetensors: " + e.what()));
    }
  }
  // The trained weights: a PEFT adapter directory (LoRA) or a Hugging Face model directory (full).
  auto save_weights = [&](const std::string& dir) -> Status {
    if (adapter) return model::SavePeftAdapter(*adapter, dir, model_opts.model_dir);
    return model::SaveModelDir(base, dir,
                               {base.dtype(), 2'000'000'000, model_opts.model_dir,
                                m.dir.generation_config.empty() ? Json() : m.dir.generation_config});
  };
  // <out>/checkpoint-<done>: the weights, AdamW's state, the RNG and trainer_state.json, written in
  // a staging directory, synced, then published whole.
  auto save_checkpoint = [&](int64_t done) -> Status {
    std::string dir = o.out + "/checkpoint-" + std::to_string(done);
    OPENRL_RETURN_IF_ERROR(fs::CreateDirectories(o.out));
    OPENRL_ASSIGN_OR_RETURN(std::string tmp, fs::StagingPath(dir));
    Status st = fs::CreateDirectories(tmp);
    if (st.ok()) st = save_weights(tmp);
    if (st.ok())
      st = model::WriteTensors(trainer.optimizer().StateTensors(), tmp + "/optimizer.safetensors", {});
    if (st.ok()) {
      at::Tensor state;
      {
        std::lock_guard<std::mutex> lock(cpu_rng.mutex());
        state = cpu_rng.get_state();
      }
      st = model::WriteTensors({{"cpu", state}}, tmp + "/rng_state.safetensors", {});
    }
    if (st.ok()) {
      Json state = run;
      state["step"] = done;
      st = fs::WriteFileAtomic(tmp + "/trainer_state.json", state.dump(2) + "\n");
    }
    if (st.ok()) st = fs::SyncTree(tmp);
    if (st.ok()) st = fs::PublishDirectory(tmp, dir);
    if (!st.ok()) {
      std::error_code ec;
      std::filesystem::remove_all(tmp, ec);
    }
    return st;
  };
  // Row `p` of the run (p = step * batch + i) is row order[p % n] of epoch p / n; with --shuffle each
  // epoch has its own permutation, drawn from --seed.
  std::vector<size_t> order(rows.size());
  int64_t order_epoch = -1;
  auto row_at = [&](int64_t p) -> const engine::SupervisedExample& {
    int64_t epoch = p / n;
    if (epoch != order_epoch) {
      std::iota(order.begin(), order.end(), 0);
      if (o.shuffle) {
        std::mt19937_64 rng(o.seed + static_cast<uint64_t>(epoch));
        std::shuffle(order.begin(), order.end(), rng);
      }
      order_epoch = epoch;
    }
    return rows[order[static_cast<size_t>(p % n)]];
  };
  std::vector<std::vector<int32_t>> eval_tokens;
  std::vector<std::vector<float>> eval_weights;
  for (auto& ex : eval) {
    eval_tokens.push_back(std::move(ex.tokens));
    eval_weights.push_back(std::move(ex.weights));
  }
  auto evaluate = [&](int64_t after_step) -> Status {
    OPENRL_ASSIGN_OR_RETURN(engine::StepReport r, trainer.EvaluateWeighted(eval_tokens, eval_weights));
    std::cout << Json{{"step", after_step}, {"eval_loss", r.loss}, {"eval_tokens", r.tokens}}.dump() << "\n"
              << std::flush;
    return Status::Ok();
  };
  if (!eval_tokens.empty() && start == 0) {
    if (auto st = evaluate(0); !st.ok()) return PrintError(st.WithContext(o.eval_data));
  }
  ProgressBar bar({.label = "train", .total = steps, .unit = "step"});
  bar.Update(start);
  for (int64_t step = start; step < steps; ++step) {
    std::vector<std::vector<int32_t>> batch;
    std::vector<std::vector<float>> weights;
    std::vector<std::vector<int64_t>> segments;  // packed rows only
    for (int64_t i = 0; i < o.batch_size; ++i) {
      const auto& ex = row_at(step * o.batch_size + i);
      batch.push_back(ex.tokens);
      weights.push_back(ex.weights);
      if (o.packing) segments.push_back(ex.segments);
    }
    hp.lr = o.lr * schedule.Factor(step);
    Result<engine::StepReport> rep = InvalidArgument("unreachable");
    bool profiled = !o.profile.empty() && step == steps - 1;
    if (profiled) StartProfiler();
    if (step == 0 && !o.dump_grads.empty()) {
      rep = trainer.ForwardBackwardWeighted(batch, weights, segments);
      if (!rep.ok()) return PrintError(rep.status());
      std::vector<std::pair<std::string, at::Tensor>> grads;
      auto named = adapter ? adapter->NamedTensors() : base.NamedParameters();
      for (auto& [name, t] : named) grads.emplace_back(name, t.grad().defined() ? t.grad() : at::zeros_like(t));
      if (auto st = model::WriteTensors(grads, o.dump_grads, {}); !st.ok()) return PrintError(st);
      auto st = trainer.optimizer().Step(hp);
      if (!st.ok()) return PrintError(st.status());
      rep->grad_norm = st->grad_norm;
    } else {
      rep = trainer.StepWeighted(batch, weights, hp, segments);
      if (!rep.ok()) return PrintError(rep.status());
    }
    if (profiled) {
      if (auto st = StopProfiler(o.profile); !st.ok()) return PrintError(st);
    }
    Json line = {{"step", step + 1},
                 {"epoch", static_cast<double>((step + 1) * o.batch_size) / static_cast<double>(n)},
                 {"loss", rep->loss},
                 {"grad_norm", rep->grad_norm},
                 {"lr", hp.lr},
                 {"tokens", rep->tokens},
                 {"tokens_per_second", rep->tokens_per_second}};
    if (peak > 0) line["mfu"] = rep->mfu;
    std::cout << line.dump() << "\n" << std::flush;
    char suffix[96];
    std::snprintf(suffix, sizeof suffix, "loss %.4f  lr %.3g  %.0f tok/s", rep->loss, hp.lr,
                  rep->tokens_per_second);
    bar.SetSuffix(suffix);
    bar.Advance();
    bool last = step + 1 == steps;
    if (!eval_tokens.empty() && (last || (o.eval_every > 0 && (step + 1) % o.eval_every == 0))) {
      if (auto st = evaluate(step + 1); !st.ok()) return PrintError(st.WithContext(o.eval_data));
    }
    if (o.save_every > 0 && (step + 1) % o.save_every == 0) {
      if (auto st = save_checkpoint(step + 1); !st.ok()) return PrintError(st);
    }
  }
  bar.Finish();
  if (!o.out.empty()) {
    if (Status st = save_weights(o.out); !st.ok()) return PrintError(st);
  }
  return 0;
}

void Install(CLI::App& app) {
  auto* sub = app.add_subcommand("train", "Supervised fine-tuning (LoRA or full) on a JSONL dataset");
  auto o = std::make_shared<TrainOptions>();
  AddModelOptions(sub, o->model);
  sub->add_option(
         "--data", o->data,
         "JSONL, one example per line: {\"tokens\", \"weights\"?}, {\"text\"}, {\"prompt\", \"completion\"} "
         "(text or messages) or {\"messages\", \"tools\"?}")
      ->required();
  sub->add_option("--train-on", o->train_on,
                  "which tokens of {\"messages\"} lines are trained: assistant (every assistant turn), "
                  "last-assistant, all")
      ->capture_default_str();
  sub->add_flag("--print-examples", o->print_examples,
                "print each example's tokens and weights as JSON lines and exit without training");
  sub->add_option("--out", o->out, "output: PEFT adapter dir (LoRA) or model dir (full)");
  sub->add_option("--lora-rank", o->lora_rank, "LoRA rank; 0 = full fine-tuning")->capture_default_str();
  sub->add_option("--lora-alpha", o->lora_alpha, "LoRA alpha")->capture_default_str();
  sub->add_option("--lora-dropout", o->lora_dropout,
                  "LoRA dropout while training, for a new adapter (PEFT's lora_dropout)")
      ->capture_default_str();
  sub->add_flag("--rslora", o->rslora,
                "scale a new adapter's update by alpha/sqrt(rank) (PEFT's use_rslora)");
  sub->add_option("--targets", o->targets, "LoRA target modules")->capture_default_str();
  sub->add_option("--steps", o->steps, "optimizer steps")->capture_default_str();
  sub->add_option("--epochs", o->epochs,
                  "train for this many passes over the dataset instead of --steps (the last step may end "
                  "inside an epoch)");
  sub->add_flag("--shuffle", o->shuffle,
                "take rows in an order shuffled per epoch (from --seed); default: file order");
  sub->add_option("--lr-schedule", o->lr_schedule,
                  "constant | linear | cosine (to 0 at the last step), as transformers' schedulers")
      ->capture_default_str();
  sub->add_option("--warmup-steps", o->warmup_steps, "steps over which the learning rate rises from 0")
      ->capture_default_str();
  sub->add_option("--eval-data", o->eval_data,
                  "held-out JSONL (same formats): its loss, without dropout, before the first step, every "
                  "--eval-every steps and after the last");
  sub->add_option("--eval-every", o->eval_every, "steps between evaluations (0 = first and last only)")
      ->capture_default_str();
  sub->add_option("--max-length", o->max_length,
                  "longest example in tokens (0 = the model's context); a longer line is refused, naming it")
      ->capture_default_str();
  sub->add_flag("--truncate", o->truncate,
                "cut examples longer than --max-length to their first tokens instead");
  sub->add_flag("--packing", o->packing,
                "pack examples end to end into rows of --max-length tokens (best fit decreasing, as TRL's "
                "packing); each attends only to itself, and --batch-size counts packed rows (--eval-data "
                "is not packed: its loss is the same either way)");
  sub->add_option(
         "--save-every", o->save_every,
         "write OUT/checkpoint-<step> (adapter or model, optimizer, RNG, trainer_state.json) every this "
         "many steps (0 = none)")
      ->capture_default_str();
  sub->add_option("--resume", o->resume,
                  "go on from a checkpoint-<step> directory, with the settings and data it was trained with: "
                  "the remaining steps are those of the uninterrupted run");
  sub->add_option("--batch-size", o->batch_size, "sequences per step")->capture_default_str();
  sub->add_option("--micro-batch", o->micro_batch, "sequences per forward/backward (accumulation)")->capture_default_str();
  sub->add_option("--lr", o->lr, "AdamW learning rate")->capture_default_str();
  sub->add_option("--weight-decay", o->weight_decay, "AdamW weight decay")->capture_default_str();
  sub->add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
  sub->add_option("--eps", o->eps, "AdamW epsilon")->capture_default_str();
  sub->add_option("--clip", o->clip, "gradient-norm clip (0 = off)")->capture_default_str();
  sub->add_option("--seed", o->seed, "seed for LoRA init, dropout and --shuffle")->capture_default_str();
  sub->add_flag("--checkpoint-activations", o->checkpoint, "recompute layers in backward to save memory");
  sub->add_option("--profile", o->profile, "write a Chrome trace of the last step's ops (libtorch profiler)");
  sub->add_option("--dump-grads", o->dump_grads, "write the first step's gradients as safetensors");
  sub->callback([o] { SetExitCode(RunTrain(*o)); });
}

}  // namespace

OPENRL_CLI_COMMAND("train", Install);

}  // namespace openrl::cli
