// `openrl quickstart`: the product's main loop end to end on a real model, on this machine.
//   1. import SmolLM2-135M-Instruct from its GGUF file (once; cached as a HF directory);
//   2. measure a behaviour a rule can check: answering arithmetic questions in a requested
//      format, `<answer>NUMBER</answer>`, and getting the number right (greedy, held-out set);
//   3. post-train it with a LoRA adapter on examples of that behaviour (prompt tokens masked);
//   4. measure again, save the adapter (PEFT layout), and export base+adapter as a q8_0 GGUF
//      that llama.cpp and Ollama load;
//   5. reinforcement learning through the training API (quickstart_rl.cc): an in-process
//      `openrl serve` serves the tuned model, a client samples groups of answers, rewards the
//      right ones and trains a LoRA with the importance_sampling loss; the reward rises.
// `--tiny` runs the older from-scratch loop on a tiny model instead (quickstart_tiny.cc).
#include <ATen/Parallel.h>

#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <regex>
#include <set>

#include "openrl/cli/command.h"
#include "openrl/cli/quickstart.h"
#include "openrl/engine/sampler.h"
#include "openrl/model/checkpoint.h"
#include "openrl/model/gguf_import.h"
#include "openrl/model/peft_io.h"
#include "openrl/template/chat_template.h"
#include "openrl/tokenizer/tokenizer.h"

namespace openrl::cli::quickstart {
namespace {

namespace stdfs = std::filesystem;

struct Options {
  std::string model = "var/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string workdir = "var/quickstart";
  int64_t steps = 60;
  int64_t batch = 8;
  int64_t train_size = 256;
  int64_t eval_size = 64;
  int64_t rank = 16;
  double lr = 2e-3;
  bool export_gguf = true;
  int64_t rl_iterations = 12;
  int threads = 0;
  bool tiny = false;
  TinyOptions tiny_opts;
};

// Two-digit additions and subtractions, deterministic, no problem in both sets.
void MakeProblems(int64_t n_train, int64_t n_eval, std::vector<Problem>& train, std::vector<Problem>& eval) {
  std::mt19937_64 rng(2026);
  std::uniform_int_distribution<int> num(10, 99), op(0, 1);
  std::set<std::tuple<int, int, int>> seen;
  while (static_cast<int64_t>(train.size() + eval.size()) < n_train + n_eval) {
    int a = num(rng), b = num(rng), o = op(rng);
    if (!seen.insert({a, b, o}).second) continue;
    Problem p{Format("What is %d %c %d? Reply with only the result, written as <answer>NUMBER</answer>.", a,
                     o ? '-' : '+', b),
              o ? a - b : a + b};
    (static_cast<int64_t>(eval.size()) < n_eval ? eval : train).push_back(std::move(p));
  }
}

struct Model {
  std::string dir;
  model::ModelDir md;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  std::optional<chat::ChatTemplate> chat;
  int32_t eos = 0;
};

Result<std::vector<int32_t>> PromptIds(const Model& m, const Problem& p) {
  Json messages = Json::array({{{"role", "user"}, {"content", p.question}}});
  OPENRL_ASSIGN_OR_RETURN(std::string text, m.chat->Render(messages, true));
  return m.tok->Encode(text, false);
}

struct Score {
  double format = 0, number = 0, both = 0;
  std::vector<std::string> outputs;
};

// Greedy answers to every problem; the rule: the whole reply is <answer>N</answer>, and N (or
// the last integer of a free-form reply) is right.
Result<Score> Evaluate(const Model& m, const model::LoraAdapter* adapter, const std::vector<Problem>& problems) {
  std::vector<engine::SampleRequest> reqs;
  for (const auto& p : problems) {
    OPENRL_ASSIGN_OR_RETURN(auto ids, PromptIds(m, p));
    engine::SampleRequest r{std::move(ids), {}, adapter};
    r.params.max_tokens = 24;
    r.params.temperature = 0;
    r.params.stop_token_ids = {m.eos};
    reqs.push_back(std::move(r));
  }
  OPENRL_ASSIGN_OR_RETURN(auto results, engine::Generate(*m.md.model, reqs, m.tok.get()));
  Score s;
  for (size_t i = 0; i < results.size(); ++i) {
    std::string out = m.tok->Decode(results[i].tokens, true);
    Verdict v = Check(out, problems[i].answer);
    s.format += v.format;
    s.number += v.number;
    s.both += v.format && v.number;
    s.outputs.push_back(out);
  }
  for (double* v : {&s.format, &s.number, &s.both}) *v = 100.0 * *v / static_cast<double>(problems.size());
  return s;
}

Result<Model> LoadBase(const Options& o) {
  Model m;
  if (!stdfs::exists(o.model))
    return NotFound(o.model + ": no such model file (run `make setup`, which fetches SmolLM2-135M-Instruct)");
  m.dir = o.model;
  if (model::IsGgufFile(o.model)) {
    OPENRL_ASSIGN_OR_RETURN(m.dir, model::ImportGgufCached(o.model));
  }
  OPENRL_ASSIGN_OR_RETURN(m.md, model::LoadModelDir(m.dir, {at::kFloat, at::kCPU}));
  OPENRL_ASSIGN_OR_RETURN(m.tok, tokenizer::Tokenizer::FromDirectory(m.dir));
  OPENRL_ASSIGN_OR_RETURN(m.chat, chat::ChatTemplate::FromDirectory(m.dir));
  if (m.md.config.eos_token_ids.empty()) return InvalidArgument(m.dir + ": config.json has no eos_token_id");
  m.eos = static_cast<int32_t>(m.md.config.eos_token_ids[0]);
  return m;
}

void PrintSamples(const std::vector<Problem>& eval, const Score& before, const Score& after) {
  std::cout << "samples (greedy, held out):\n";
  for (size_t i = 0; i < std::min<size_t>(3, eval.size()); ++i) {
    auto one_line = [](std::string s) {
      for (char& c : s)
        if (c == '\n') c = ' ';
      return s.size() > 70 ? s.substr(0, 67) + "..." : s;
    };
    std::cout << "  Q: " << eval[i].question.substr(0, eval[i].question.find('?') + 1) << "  (" << eval[i].answer
              << ")\n"
              << "     base       " << one_line(before.outputs[i]) << "\n"
              << "     base+LoRA  " << one_line(after.outputs[i]) << "\n";
  }
}

int Run(const Options& o) {
  if (o.threads > 0) at::set_num_threads(o.threads);
  if (o.tiny) return RunTiny(o.tiny_opts);
  auto fail = [](const Status& s) { return PrintError(s); };
  std::cerr << "OpenRL quickstart — post-training a real model (SmolLM2-135M-Instruct) with LoRA\n\n"
            << "[1/6] loading " << o.model << "\n";
  auto base = LoadBase(o);
  if (!base.ok()) return fail(base.status());
  Model& m = *base;
  std::vector<Problem> train, eval;
  MakeProblems(o.train_size, o.eval_size, train, eval);

  std::cerr << "[2/6] measuring the base model on " << eval.size() << " held-out questions\n";
  auto before = Evaluate(m, nullptr, eval);
  if (!before.ok()) return fail(before.status());

  std::cerr << Format("[3/6] LoRA (rank %lld) on %zu examples of the format, %lld steps of %lld\n",
                      static_cast<long long>(o.rank), train.size(), static_cast<long long>(o.steps),
                      static_cast<long long>(o.batch));
  std::vector<std::vector<int32_t>> rows;
  std::vector<int64_t> loss_from;
  for (const auto& p : train) {
    auto ids = PromptIds(m, p);
    if (!ids.ok()) return fail(ids.status());
    loss_from.push_back(static_cast<int64_t>(ids->size()));
    auto completion = m.tok->Encode("<answer>" + std::to_string(p.answer) + "</answer>", false);
    ids->insert(ids->end(), completion.begin(), completion.end());
    ids->push_back(m.eos);
    rows.push_back(std::move(*ids));
  }
  model::LoraConfig lc;
  lc.rank = o.rank;
  lc.alpha = 2.0 * static_cast<double>(o.rank);
  auto adapter = model::LoraAdapter::Create(m.md.config, lc, at::kFloat, at::kCPU, 7);
  LoopResult loop;
  {
    engine::Trainer trainer(*m.md.model, adapter.get(), {o.batch, false, 0});
    auto r = TrainLoop(trainer, rows, loss_from, {o.steps, o.batch, o.lr, "lora"});
    if (!r.ok()) return fail(r.status());
    loop = *r;
  }
  adapter->SetRequiresGrad(false);

  std::cerr << "[4/6] measuring base+LoRA on the same questions\n";
  auto after = Evaluate(m, adapter.get(), eval);
  if (!after.ok()) return fail(after.status());
  std::string adapter_dir = o.workdir + "/answer-format-lora";
  if (auto s = model::SavePeftAdapter(*adapter, adapter_dir, m.dir); !s.ok()) return fail(s);

  std::string gguf_out = o.workdir + "/smollm2-answer-format.q8_0.gguf";
  std::string merged_dir = o.workdir + "/smollm2-answer-format";
  if (o.export_gguf || o.rl_iterations > 0) {
    if (auto s = model::MergeAdapter(*m.md.model, *adapter); !s.ok()) return fail(s);
  }
  if (o.export_gguf) {
    std::cerr << "[5/6] merging the adapter and exporting " << gguf_out << "\n";
    if (auto s = model::ExportGguf(*m.md.model, m.dir, gguf_out, model::ExportType::kQ8_0, "SmolLM2-135M-Instruct+answer-format");
        !s.ok())
      return fail(s);
  }
  std::optional<RlResult> rl;
  if (o.rl_iterations > 0) {
    std::cerr << Format("[6/6] RL through the training API: %lld iterations of 16 new training questions x 4 samples, "
                        "reward = right answer in format\n",
                        static_cast<long long>(o.rl_iterations));
    model::SaveOptions save;
    save.tokenizer_from = m.dir;
    save.generation_config = m.md.generation_config;
    if (auto s = model::SaveModelDir(*m.md.model, merged_dir, save); !s.ok()) return fail(s);
    RlOptions ro;
    ro.model_dir = merged_dir;
    ro.workdir = o.workdir;
    ro.iterations = o.rl_iterations;
    ro.eos = m.eos;
    auto r = RunRlThroughApi(
        ro, train, eval, [&](const Problem& p) { return PromptIds(m, p); },
        [&](const std::vector<int32_t>& t) { return m.tok->Decode(t, true); });
    if (!r.ok()) return fail(r.status());
    rl = *r;
  }

  std::cout << "\n== OpenRL quickstart summary ==\n";
  std::cout << Format("base model      SmolLM2-135M-Instruct (%.1fM parameters), from %s\n",
                      m.md.config.NumParameters() / 1e6, o.model.c_str());
  std::cout << Format("LoRA adapter    %s  (PEFT layout, rank %lld), %lld steps, final loss %.3f, %.0f completion tokens/s\n",
                      adapter_dir.c_str(), static_cast<long long>(o.rank), static_cast<long long>(o.steps), loop.loss,
                      loop.tokens_per_second);
  if (o.export_gguf) std::cout << "GGUF export     " << gguf_out << "  (base+LoRA merged, q8_0, for llama.cpp / Ollama)\n";
  std::cout << Format("held-out questions (%zu)           base   base+LoRA\n", eval.size());
  std::cout << Format("  follows <answer>N</answer>    %6.1f%%   %6.1f%%\n", before->format, after->format);
  std::cout << Format("  right number (any form)       %6.1f%%   %6.1f%%\n", before->number, after->number);
  std::cout << Format("  both                          %6.1f%%   %6.1f%%\n", before->both, after->both);
  if (rl) {
    std::string curve;
    for (double r : rl->rewards) curve += Format(" %.2f", r);
    std::cout << Format("RL via the API  %zu iterations in %.0fs, mean reward per iteration:%s\n", rl->rewards.size(),
                        rl->seconds, curve.c_str());
    std::cout << Format("  held out, right and in format (greedy, via the API): tuned model %.1f%% -> +RL %.1f%%\n",
                        rl->before, rl->after);
    std::cout << "  RL state      " << rl->checkpoint << "  (in " << o.workdir << "/api)\n";
    std::string files;
    for (const std::string& f : rl->adapter_files) files += (files.empty() ? "" : ", ") + f;
    std::cout << "  RL adapter    " << rl->adapter_dir << "  (exported and downloaded by signed URL: " << files << ")\n";
  }
  PrintSamples(eval, *before, *after);
  std::cout << "\nNext: openrl generate --model " << o.model << " --adapter " << adapter_dir << "\n";
  return 0;
}

void Install(CLI::App& app) {
  auto* sub = app.add_subcommand("quickstart", "Post-train SmolLM2-135M-Instruct with LoRA on a checkable behaviour");
  auto o = std::make_shared<Options>();
  sub->add_option("--model", o->model, "GGUF file or model directory to start from")->capture_default_str();
  sub->add_option("--workdir", o->workdir, "where adapters and exports are written")->capture_default_str();
  sub->add_option("--steps", o->steps, "LoRA steps")->capture_default_str();
  sub->add_option("--batch", o->batch, "sequences per step")->capture_default_str();
  sub->add_option("--train-size", o->train_size, "training questions")->capture_default_str();
  sub->add_option("--eval-size", o->eval_size, "held-out questions")->capture_default_str();
  sub->add_option("--rank", o->rank, "LoRA rank")->capture_default_str();
  sub->add_option("--lr", o->lr, "peak learning rate")->capture_default_str();
  sub->add_option("--threads", o->threads, "CPU threads (0 = all)");
  sub->add_flag("!--no-export", o->export_gguf, "skip the GGUF export");
  sub->add_option("--rl-iterations", o->rl_iterations, "RL iterations through the training API (0: skip)")
      ->capture_default_str();
  sub->add_flag("--tiny", o->tiny, "the fast from-scratch loop on a tiny model instead");
  sub->add_option("--data", o->tiny_opts.data_dir, "--tiny: directory with addition.txt and subtraction.txt");
  sub->add_option("--pretrain-steps", o->tiny_opts.pretrain_steps, "--tiny: pre-training steps");
  sub->add_option("--lora-steps", o->tiny_opts.lora_steps, "--tiny: LoRA steps");
  sub->add_flag("--fresh", o->tiny_opts.fresh, "--tiny: retrain the base model even if a matching one exists");
  sub->callback([o] {
    o->tiny_opts.workdir = o->workdir;
    SetExitCode(Run(*o));
  });
}

}  // namespace

Verdict Check(const std::string& reply, int64_t answer) {
  static const std::regex kFormat(R"(^\s*<answer>(-?\d+)</answer>\s*$)"), kInt(R"(-?\d+)");
  std::smatch match;
  Verdict v;
  v.format = std::regex_match(reply, match, kFormat);
  std::string last;
  for (auto it = std::sregex_iterator(reply.begin(), reply.end(), kInt); it != std::sregex_iterator(); ++it)
    last = it->str();
  v.number = !last.empty() && last == std::to_string(answer);
  return v;
}

OPENRL_CLI_COMMAND("quickstart", Install);

}  // namespace openrl::cli::quickstart
