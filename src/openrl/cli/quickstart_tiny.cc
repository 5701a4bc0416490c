// `openrl quickstart --tiny`: the fast from-scratch loop, kept for tests and slow machines.
//   1. learn a BPE tokenizer on the shipped arithmetic corpus;
//   2. pre-train a tiny Llama-architecture model from scratch on additions (reused next time);
//   3. write it as a Hugging Face directory, reload it, and measure held-out accuracy;
//   4. teach it subtraction with a LoRA adapter, saved in PEFT layout, with before/after figures.
#include <filesystem>
#include <iostream>
#include <sstream>

#include "openrl/cli/command.h"
#include "openrl/cli/quickstart.h"
#include "openrl/core/crypto.h"
#include "openrl/core/fs.h"
#include "openrl/engine/sampler.h"
#include "openrl/model/checkpoint.h"
#include "openrl/model/peft_io.h"
#include "openrl/tokenizer/tokenizer.h"

namespace openrl::cli::quickstart {
namespace {

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

}  // namespace

int RunTiny(const TinyOptions& o) {
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
    auto r = TrainLoop(trainer, Encode(**tok, add->train), {}, {o.pretrain_steps, 64, 3e-3, "pretrain"});
    if (!r.ok()) return fail(r.status());
    pre_loss = r->loss;
    pre_tps = r->tokens_per_second;
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
    auto r = TrainLoop(trainer, Encode(**tok, mix), {}, {o.lora_steps, 64, 6e-3, "lora"});
    if (!r.ok()) return fail(r.status());
    lora_loss = r->loss;
    lora_tps = r->tokens_per_second;
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

}  // namespace openrl::cli::quickstart
