// `openrl quickstart`: the product's main loop end to end, on this machine, in a few minutes.
//   1. learn a BPE tokenizer on the shipped arithmetic corpus;
//   2. pre-train a tiny Llama-architecture model from scratch on additions (reused next time);
//   3. write it as a Hugging Face directory, reload it, and measure held-out accuracy;
//   4. teach it subtraction with a LoRA adapter, saved in PEFT layout, with before/after figures.
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <cstdarg>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>
#include <sstream>

#include "openrl/cli/command.h"
#include "openrl/core/crypto.h"
#include "openrl/core/fs.h"
#include "openrl/core/progress.h"
#include "openrl/engine/sampler.h"
#include "openrl/engine/trainer.h"
#include "openrl/model/checkpoint.h"
#include "openrl/model/peft_io.h"

namespace openrl::cli {
namespace {

namespace stdfs = std::filesystem;

// printf-style formatting: fmt's headers inside libtorch shadow the system fmt in this file.
std::string Format(const char* f, ...) {
  va_list ap, ap2;
  va_start(ap, f);
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, f, ap);
  va_end(ap);
  std::string out(static_cast<size_t>(std::max(n, 0)), '\0');
  std::vsnprintf(out.data(), out.size() + 1, f, ap2);
  va_end(ap2);
  return out;
}

struct QuickstartOptions {
  std::string data_dir = "data/quickstart";
  std::string workdir = "var/quickstart";
  int64_t pretrain_steps = 800;
  int64_t lora_steps = 800;
  bool fresh = false;
  int threads = 0;
};

struct Corpus {
  std::vector<std::string> train, eval;  // lines "a op b = c"
};

Result<Corpus> ReadCorpus(const std::string& path) {
  OPENRL_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  Corpus c;
  std::istringstream in(text);
  std::string line;
  for (int64_t i = 0; std::getline(in, line); ++i) {
    if (line.empty()) continue;
    (i % 10 == 7 ? c.eval : c.train).push_back(line);  // a fixed tenth held out
  }
  if (c.train.empty()) return InvalidArgument(path + ": corpus is empty");
  return c;
}

model::ModelConfig TinyLlama(int64_t vocab) {
  model::ModelConfig c;
  c.family = model::Family::kLlama;
  c.model_type = "llama";
  c.vocab_size = vocab;
  c.hidden_size = 128;
  c.intermediate_size = 352;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.max_position_embeddings = 64;
  c.rope.theta = 10000;
  c.bos_token_id = 0;
  c.eos_token_ids = {1};
  c.pad_token_id = 2;
  return c;
}

std::vector<std::vector<int32_t>> Encode(const tokenizer::Tokenizer& tok, const std::vector<std::string>& lines) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& l : lines) {
    auto ids = tok.Encode(l, true);
    ids.push_back(1);  // <eos>
    out.push_back(std::move(ids));
  }
  return out;
}

// Greedy-completes "a op b =" for each line and counts exact answers.
Result<double> Accuracy(const model::Transformer& m, const tokenizer::Tokenizer& tok,
                        const model::LoraAdapter* adapter, const std::vector<std::string>& lines,
                        std::vector<std::string>* examples = nullptr) {
  std::vector<engine::SampleRequest> reqs;
  std::vector<std::string> answers;
  for (const auto& l : lines) {
    auto eq = l.find('=');
    engine::SampleRequest r{tok.Encode(l.substr(0, eq + 1), true), {}, adapter};
    r.params.max_tokens = 6;
    r.params.temperature = 0;
    r.params.stop_token_ids = {1};
    reqs.push_back(std::move(r));
    answers.push_back(l.substr(eq + 2));
  }
  OPENRL_ASSIGN_OR_RETURN(auto results, engine::Generate(m, reqs, &tok));
  int64_t ok = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    std::string got = tok.Decode(results[i].tokens, true);
    while (!got.empty() && std::isspace(static_cast<unsigned char>(got.front()))) got.erase(0, 1);
    ok += got == answers[i];
    if (examples && examples->size() < 4)
      examples->push_back(lines[i].substr(0, lines[i].find('=') + 1) + " " + got + (got == answers[i] ? "  ✓" : "  ✗"));
  }
  return static_cast<double>(ok) / static_cast<double>(lines.size());
}

Status TrainLoop(engine::Trainer& trainer, const std::vector<std::vector<int32_t>>& rows, int64_t steps,
                 int64_t batch, double lr, const std::string& label, double* final_loss, double* tok_s) {
  std::mt19937_64 rng(1234);
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  ProgressBar bar({.label = label, .total = steps, .unit = "step"});
  size_t pos = rows.size();
  double ema = 0, tps = 0;
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<std::vector<int32_t>> b;
    for (int64_t i = 0; i < batch; ++i) {
      if (pos >= rows.size()) {
        std::shuffle(order.begin(), order.end(), rng);
        pos = 0;
      }
      b.push_back(rows[order[pos++]]);
    }
    // Linear warm-up over 5% of the steps, then cosine decay to 10%.
    double warm = std::max<double>(1, steps * 0.05);
    double f = s < warm ? (s + 1) / warm
                        : 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * (s - warm) / std::max(1.0, steps - warm)));
    engine::AdamParams hp{lr * f, 0.9, 0.98, 1e-8, 0.01, 1.0};
    OPENRL_ASSIGN_OR_RETURN(auto rep, trainer.Step(b, hp));
    ema = s == 0 ? rep.loss : 0.95 * ema + 0.05 * rep.loss;
    tps = s == 0 ? rep.tokens_per_second : 0.9 * tps + 0.1 * rep.tokens_per_second;
    bar.SetSuffix(Format("loss %.3f  %.0f tok/s", ema, tps));
    bar.Advance();
  }
  bar.Finish();
  *final_loss = ema;
  *tok_s = tps;
  return Status::Ok();
}

int Run(const QuickstartOptions& o) {
  if (o.threads > 0) at::set_num_threads(o.threads);
  auto fail = [](const Status& s) { return PrintError(s); };
  auto add = ReadCorpus(o.data_dir + "/addition.txt");
  auto sub = ReadCorpus(o.data_dir + "/subtraction.txt");
  if (!add.ok()) return fail(add.status());
  if (!sub.ok()) return fail(sub.status());
  std::string base_dir = o.workdir + "/tiny-llama", adapter_dir = o.workdir + "/subtraction-lora";
  std::cerr << "OpenRL quickstart — a tiny Llama trained from scratch, then taught a new skill with LoRA\n\n";

  // Reuse the base model if it was trained from this exact corpus and recipe.
  std::string corpus_text;
  for (const auto& l : add->train) corpus_text += l + "\n";
  std::string stamp = crypto::Sha256Hex(corpus_text + "|" + std::to_string(o.pretrain_steps) + "|v1");
  bool reuse = !o.fresh && fs::Exists(base_dir + "/config.json") && fs::Exists(base_dir + "/.openrl-stamp") &&
               [&] { auto r = fs::ReadFile(base_dir + "/.openrl-stamp"); return r.ok() && *r == stamp; }();
  double pre_loss = 0, pre_tps = 0;
  if (!reuse) {
    std::cerr << "[1/4] learning a BPE tokenizer on " << add->train.size() + sub->train.size() << " lines\n";
    std::vector<std::string> corpus = add->train;
    corpus.insert(corpus.end(), sub->train.begin(), sub->train.end());
    auto tj = tokenizer::TrainByteLevelBpe(corpus, 320, {"<bos>", "<eos>", "<pad>"});
    if (!tj.ok()) return fail(tj.status());
    if (auto s = fs::CreateDirectories(base_dir); !s.ok()) return fail(s);
    if (auto s = fs::WriteFileAtomic(base_dir + "/tokenizer.json", *tj); !s.ok()) return fail(s);
    Json tcfg = {{"bos_token", "<bos>"}, {"eos_token", "<eos>"}, {"pad_token", "<pad>"},
                 {"model_max_length", 64}, {"tokenizer_class", "PreTrainedTokenizerFast"}};
    if (auto s = fs::WriteFileAtomic(base_dir + "/tokenizer_config.json", tcfg.dump(2)); !s.ok()) return fail(s);
    auto tok = tokenizer::Tokenizer::FromDirectory(base_dir);
    if (!tok.ok()) return fail(tok.status());
    auto cfg = TinyLlama((*tok)->vocab_size());
    auto model = model::Transformer::Init(cfg, at::kFloat, at::kCPU, 42);
    std::cerr << Format("[2/4] pre-training a %.2fM-parameter Llama from scratch on %zu additions\n",
                             cfg.NumParameters() / 1e6, add->train.size());
    engine::Trainer trainer(*model, nullptr, {64, false, 0});
    if (auto s = TrainLoop(trainer, Encode(**tok, add->train), o.pretrain_steps, 64, 3e-3, "pretrain", &pre_loss, &pre_tps); !s.ok())
      return fail(s);
    Json gen = {{"bos_token_id", 0}, {"eos_token_id", 1}, {"pad_token_id", 2}};
    if (auto s = model::SaveModelDir(*model, base_dir, {at::kFloat, 2'000'000'000, "", gen}); !s.ok()) return fail(s);
    if (auto s = fs::WriteFileAtomic(base_dir + "/.openrl-stamp", stamp); !s.ok()) return fail(s);
  } else {
    std::cerr << "[1/4] tokenizer: reusing " << base_dir << "/tokenizer.json\n"
              << "[2/4] base model: reusing " << base_dir << " (same corpus and recipe; --fresh retrains)\n";
  }

  std::cerr << "[3/4] reloading " << base_dir << " as a Hugging Face directory and evaluating\n";
  auto dir = model::LoadModelDir(base_dir);
  if (!dir.ok()) return fail(dir.status());
  auto tok = tokenizer::Tokenizer::FromDirectory(base_dir);
  if (!tok.ok()) return fail(tok.status());
  std::vector<std::string> add_examples, sub_before_ex, sub_after_ex;
  auto add_acc = Accuracy(*dir->model, **tok, nullptr, add->eval, &add_examples);
  auto sub_before = Accuracy(*dir->model, **tok, nullptr, sub->eval, &sub_before_ex);
  if (!add_acc.ok()) return fail(add_acc.status());
  if (!sub_before.ok()) return fail(sub_before.status());

  std::cerr << Format("[4/4] teaching subtraction with a rank-32 LoRA adapter (%zu examples, plus addition replay)\n",
                      sub->train.size());
  model::LoraConfig lc;
  lc.rank = 32;
  lc.alpha = 64;
  auto adapter = model::LoraAdapter::Create(dir->config, lc, at::kFloat, at::kCPU, 7);
  double lora_loss = 0, lora_tps = 0;
  {
    // Subtraction plus a replay of every other addition, so the new skill does not erase the old.
    std::vector<std::string> mix = sub->train;
    for (size_t i = 0; i < add->train.size(); i += 2) mix.push_back(add->train[i]);
    engine::Trainer trainer(*dir->model, adapter.get(), {64, false, 0});
    if (auto s = TrainLoop(trainer, Encode(**tok, mix), o.lora_steps, 64, 6e-3, "lora", &lora_loss, &lora_tps); !s.ok())
      return fail(s);
  }
  adapter->SetRequiresGrad(false);
  if (auto s = model::SavePeftAdapter(*adapter, adapter_dir, base_dir); !s.ok()) return fail(s);
  auto sub_after = Accuracy(*dir->model, **tok, adapter.get(), sub->eval, &sub_after_ex);
  auto add_after = Accuracy(*dir->model, **tok, adapter.get(), add->eval);
  if (!sub_after.ok()) return fail(sub_after.status());
  if (!add_after.ok()) return fail(add_after.status());

  std::cout << "\n== OpenRL quickstart summary ==\n";
  std::cout << Format("base model      %s  (%.2fM parameters, Llama architecture, HF layout)\n", base_dir.c_str(),
                           dir->config.NumParameters() / 1e6);
  if (!reuse) std::cout << Format("pre-training    %lld steps, final loss %.3f, %.0f tokens/s\n", static_cast<long long>(o.pretrain_steps), pre_loss, pre_tps);
  std::cout << Format("LoRA adapter    %s  (PEFT layout, rank %lld), %lld steps, final loss %.3f, %.0f tokens/s\n",
                           adapter_dir.c_str(), static_cast<long long>(lc.rank), static_cast<long long>(o.lora_steps), lora_loss, lora_tps);
  std::cout << "held-out accuracy      base     base+LoRA\n";
  std::cout << Format("  addition       %10.1f%%  %9.1f%%\n", 100 * *add_acc, 100 * *add_after);
  std::cout << Format("  subtraction    %10.1f%%  %9.1f%%\n", 100 * *sub_before, 100 * *sub_after);
  std::cout << "samples (greedy):\n";
  for (const auto& e : add_examples) std::cout << "  base       " << e << "\n";
  for (const auto& e : sub_after_ex) std::cout << "  base+LoRA  " << e << "\n";
  std::cout << "\nNext: openrl generate --model " << base_dir << " --adapter " << adapter_dir << "\n";
  return 0;
}

void Install(CLI::App& app) {
  auto* sub = app.add_subcommand("quickstart", "Train a tiny model from scratch, then teach it a skill with LoRA");
  auto o = std::make_shared<QuickstartOptions>();
  sub->add_option("--data", o->data_dir, "directory with addition.txt and subtraction.txt")->capture_default_str();
  sub->add_option("--workdir", o->workdir, "where models and adapters are written")->capture_default_str();
  sub->add_option("--pretrain-steps", o->pretrain_steps, "pre-training steps")->capture_default_str();
  sub->add_option("--lora-steps", o->lora_steps, "LoRA steps")->capture_default_str();
  sub->add_option("--threads", o->threads, "CPU threads (0 = all)");
  sub->add_flag("--fresh", o->fresh, "retrain the base model even if a matching one exists");
  sub->callback([o] { SetExitCode(Run(*o)); });
}

}  // namespace

OPENRL_CLI_COMMAND("quickstart", Install);

}  // namespace openrl::cli
