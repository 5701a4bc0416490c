// Quickstart stage 6: reinforcement learning through the training API, as a research loop would
// run it: an in-process `openrl serve` (the same Tinker routes, engine scheduler and durable
// futures) on an ephemeral port, and a client that samples, scores with a rule and trains.
#include <chrono>
#include <filesystem>
#include <iostream>

#include "openrl/api/tinker_client.h"
#include "openrl/cli/quickstart.h"
#include "openrl/cli/training_api.h"
#include "openrl/core/progress.h"
#include "openrl/http/server.h"

namespace openrl::cli::quickstart {
namespace {

constexpr const char* kBaseName = "quickstart/smollm2-answer-format";

// Share of problems answered right and in format, greedy, through the API (one batched request
// per problem, all in flight together).
Result<double> HeldOut(api::TinkerClient& client, const std::string& sampler, const std::vector<Problem>& eval,
                       const std::function<Result<std::vector<int32_t>>(const Problem&)>& prompt_ids,
                       const std::function<std::string(const std::vector<int32_t>&)>& decode, int32_t eos) {
  std::vector<std::vector<int32_t>> prompts;
  for (const Problem& p : eval) {
    OPENRL_ASSIGN_OR_RETURN(auto prompt, prompt_ids(p));
    prompts.push_back(std::move(prompt));
  }
  OPENRL_ASSIGN_OR_RETURN(auto samples, client.SampleMany(sampler, prompts, 1, {24, 0.0, {eos}, 0}));
  double right = 0;
  for (size_t i = 0; i < eval.size(); ++i) {
    Verdict v = Check(decode(samples[i][0].tokens), eval[i].answer);
    right += v.format && v.number;
  }
  return 100.0 * right / static_cast<double>(eval.size());
}

}  // namespace

Result<RlResult> RunRlThroughApi(const RlOptions& o, const std::vector<Problem>& train, const std::vector<Problem>& eval,
                                 const std::function<Result<std::vector<int32_t>>(const Problem&)>& prompt_ids,
                                 const std::function<std::string(const std::vector<int32_t>&)>& decode) {
  auto t0 = std::chrono::steady_clock::now();
  std::string data_dir = o.workdir + "/api";
  std::error_code ec;
  std::filesystem::remove_all(data_dir, ec);  // a fresh server state each run
  TrainingApiOptions ao;
  ao.data_dir = data_dir;
  ao.base_models = {std::string(kBaseName) + "=" + o.model_dir};
  OPENRL_ASSIGN_OR_RETURN(std::unique_ptr<TrainingApi> training, StartTrainingApi(ao));
  OPENRL_ASSIGN_OR_RETURN(api::NewKey key, training->keys->Create("quickstart", 0, 0));
  http::ServerOptions so;
  so.port = 0;
  so.worker_threads = 4;
  http::Server server(so);
  training->tinker->Install(server.router());
  OPENRL_RETURN_IF_ERROR(server.Start());
  std::cerr << "      serving the Tinker API on http://127.0.0.1:" << server.port() << "/api/v1 (data in " << data_dir
            << ")\n";

  api::TinkerClient client("127.0.0.1", server.port(), key.secret);
  OPENRL_RETURN_IF_ERROR(client.CreateSession());
  OPENRL_ASSIGN_OR_RETURN(std::string run, client.CreateLoraRun(kBaseName, o.rank, 11));
  RlResult result;
  OPENRL_ASSIGN_OR_RETURN(std::string base_sampler, client.SamplerForBase(kBaseName));
  OPENRL_ASSIGN_OR_RETURN(result.before, HeldOut(client, base_sampler, eval, prompt_ids, decode, o.eos));

  // Each iteration: the next `prompts` training questions (wrapping around the training set), each
  // sampled `group` times; fresh questions, so the reward measures what generalizes.
  ProgressBar bar({.label = "rl", .total = o.iterations, .unit = "iter"});
  for (int64_t it = 0; it < o.iterations; ++it) {
    std::vector<Problem> batch;
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t q = 0; q < o.prompts && !train.empty(); ++q) {
      batch.push_back(train[static_cast<size_t>(it * o.prompts + q) % train.size()]);
      OPENRL_ASSIGN_OR_RETURN(auto prompt, prompt_ids(batch.back()));
      prompts.push_back(std::move(prompt));
    }
    OPENRL_ASSIGN_OR_RETURN(std::string sampler, client.SamplerForCurrentWeights(run));
    OPENRL_ASSIGN_OR_RETURN(auto groups, client.SampleMany(sampler, prompts, o.group,
                                                           {24, 1.0, {o.eos}, static_cast<uint64_t>(1000 * it)}));
    std::vector<api::ClientDatum> data;
    double total = 0;
    for (size_t q = 0; q < batch.size(); ++q) {
      const auto& samples = groups[q];
      std::vector<double> rewards;
      for (const auto& smp : samples) {
        Verdict v = Check(decode(smp.tokens), batch[q].answer);
        rewards.push_back(v.format && v.number ? 1.0 : 0.0);
      }
      double mean = 0;
      for (double r : rewards) mean += r / static_cast<double>(rewards.size());
      total += mean;
      for (size_t i = 0; i < samples.size(); ++i) {
        if (rewards[i] == mean || samples[i].tokens.empty()) continue;  // no signal in a uniform group
        const std::vector<int32_t>& prompt = prompts[q];
        std::vector<int32_t> full = prompt;
        full.insert(full.end(), samples[i].tokens.begin(), samples[i].tokens.end());
        api::ClientDatum d;
        d.tokens.assign(full.begin(), full.end() - 1);
        d.targets.assign(full.begin() + 1, full.end());
        size_t n = prompt.size() - 1;
        std::vector<float> logprobs(n, 0.0f), advantages(n, 0.0f);
        logprobs.insert(logprobs.end(), samples[i].logprobs.begin(), samples[i].logprobs.end());
        advantages.resize(d.tokens.size(), static_cast<float>(rewards[i] - mean));
        d.float_inputs["logprobs"] = std::move(logprobs);
        d.float_inputs["advantages"] = std::move(advantages);
        data.push_back(std::move(d));
      }
    }
    result.rewards.push_back(total / static_cast<double>(batch.size()));
    if (!data.empty()) {
      OPENRL_RETURN_IF_ERROR(client.ForwardBackward(run, data, "importance_sampling").status());
      OPENRL_RETURN_IF_ERROR(client.OptimStep(run, o.lr).status());
    }
    bar.SetSuffix(Format("reward %.2f", result.rewards.back()));
    bar.Advance();
  }
  bar.Finish();
  OPENRL_ASSIGN_OR_RETURN(result.checkpoint, client.SaveState(run, "quickstart-rl"));
  // Out of the server: the adapter as an export, fetched by its signed download URLs.
  OPENRL_ASSIGN_OR_RETURN(std::string exported, client.ExportWeights(run, "quickstart-rl"));
  result.adapter_dir = o.workdir + "/rl-adapter";
  std::filesystem::remove_all(result.adapter_dir, ec);
  OPENRL_ASSIGN_OR_RETURN(result.adapter_files, client.DownloadExport(exported, result.adapter_dir));
  OPENRL_ASSIGN_OR_RETURN(std::string final_sampler, client.SamplerForCurrentWeights(run));
  OPENRL_ASSIGN_OR_RETURN(result.after, HeldOut(client, final_sampler, eval, prompt_ids, decode, o.eos));
  server.Shutdown(std::chrono::seconds(5));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace openrl::cli::quickstart
