// Scheduler internals shared by scheduler.cc (state, queues, engine thread), scheduler_train.cc
// (packed forward/backward, optimizer steps, checkpoints) and scheduler_sample.cc (sampling).
#pragma once

#include <atomic>
#include <chrono>
#include <set>

#include "openrl/engine/scheduler.h"

namespace openrl::engine {

struct LoadedBase {
  BaseModelInfo info;
  std::string dir;  // Hugging Face directory (GGUF files are imported into the cache first)
  model::ModelDir model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null when the directory has none
  std::vector<int64_t> eos_ids;
};

struct QueuedItem {
  Work work;
  Done done;
};

struct RunState {
  RunInfo info;
  LoadedBase* base = nullptr;
  std::unique_ptr<model::LoraAdapter> adapter;  // null while not live (and for full fine-tuning)
  std::unique_ptr<model::Transformer> own;       // full fine-tuning: the run's trainable weights
  std::unique_ptr<AdamW> optimizer;
  int64_t next_seq = 1;                      // the seq_id that runs next
  std::map<int64_t, QueuedItem> queue;       // by seq_id
  std::deque<QueuedItem> unnumbered;         // seq_id 0: run before the next numbered item
  std::set<int64_t> skipped;                 // seq_ids refused before they were queued
  bool offloaded = false;                    // adapter + optimizer state written to the offload dir
  bool resident() const { return adapter != nullptr || own != nullptr; }
  const model::Transformer& model() const { return own ? *own : *base->model.model; }
  std::chrono::steady_clock::time_point last_used{};
};

struct SamplerState {
  SamplingSessionInfo info;
  LoadedBase* base = nullptr;
  std::shared_ptr<const model::LoraAdapter> adapter;  // null: the base model alone
  std::shared_ptr<const model::Transformer> weights;  // full fine-tuning snapshot (instead of the base)
  // Whose requests these are, for the gather window: the run whose weights it samples (a client's
  // training and sampling are one client), or the session's own id on a base model.
  std::string client;
};

// A sample request in flight: its num_samples rows generate in a GenerationBatch; it completes
// when the last one finishes. It holds the weights its rows use.
struct PendingSample {
  std::string cancel_id;
  SampleOutput out;
  Done done;
  int64_t remaining = 0;
  std::shared_ptr<const model::LoraAdapter> adapter;
  std::shared_ptr<const model::Transformer> weights;
};

// The running generation of one model (a base, or a full-weights snapshot): rows of many
// requests and adapters, joined and retired between decode steps. Engine thread only.
struct ActiveGeneration {
  std::unique_ptr<GenerationBatch> batch;
  std::map<int64_t, std::pair<std::shared_ptr<PendingSample>, int64_t>> owners;  // ticket → (request, sample)
};

struct Scheduler::Impl {
  Impl(store::MetadataStore& db, SchedulerOptions options) : db(db), options(std::move(options)) {}

  store::MetadataStore& db;
  SchedulerOptions options;

  std::mutex models_mu;  // guards `bases`; a base is never removed once loaded
  std::map<std::string, std::unique_ptr<LoadedBase>> bases;
  std::map<std::string, std::string> base_paths;  // registered name → path

  std::mutex mu;  // guards everything below
  std::condition_variable cv;
  std::map<std::string, std::unique_ptr<RunState>> runs;
  std::map<std::string, std::unique_ptr<SamplerState>> samplers;
  std::deque<std::pair<SampleWork, Done>> sample_queue;
  std::set<std::string> cancel_requests;  // cancel_ids of requests that may be running (DropCancelled)
  int64_t queued = 0;
  bool stopping = false;
  std::thread engine;

  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::atomic<double> busy_seconds{0};
  // When each client (a training run, with the samplers of its weights) last sent work; see
  // AwaitingClient.
  std::map<std::string, std::chrono::steady_clock::time_point> client_seen;
  std::function<Result<int64_t>()> sweep_;  // Scheduler::SweepExpiredCheckpoints

  // scheduler_models.cc
  Result<LoadedBase*> LoadBase(const std::string& name);
  // Runs `fn` (which returns a Result) on a thread of its own with the engine's threads of tensor
  // work: the OpenMP workers it starts end with it instead of staying beside the engine's (see
  // SerialTensorWorkOnThisThread). For the heavy tensor work a request handler asks for: loading
  // or copying every weight of a model. An exception becomes an error naming `context`.
  template <typename F>
  auto OnOwnTensorThread(const std::string& context, F&& fn) -> decltype(fn()) {
    decltype(fn()) out = Internal("unreachable");
    std::thread([&] {
      try {
        SetTensorThreadsOfThisThread(options.intra_op_threads);
        out = fn();
      } catch (const std::exception& e) {
        out = StatusFromException(e, context);
      }
    }).join();
    return out;
  }

  // scheduler.cc
  void EngineLoop();
  void PersistRunTouch(const std::string& run_id);
  // The ready item of `run`, if its next seq_id is queued (skipped seq_ids are passed over).
  QueuedItem* ReadyItem(RunState& run);
  // Under `mu`: whether a client that sent work within `options.client_active` has none queued now,
  // i.e. whether waiting the gather window could pack its next request into the coming cycle. A
  // lone client never waits. Forgets clients idle for longer.
  bool AwaitingClient();
  // Under `mu`: `client` sent work now (forgets clients idle for longer than client_active once
  // many are known).
  void SeenClient(const std::string& client);

  // scheduler_train.cc
  // At start, before the engine runs: puts back a checkpoint directory that a publish interrupted
  // by a crash left aside, and removes what no checkpoint row names (the staging directories of
  // saves, copies and offloads that died half-way, and files a crashed delete left behind).
  // Returns how many entries it removed.
  Result<int64_t> ReconcileFiles();
  // Brings an offloaded run's state back into memory (engine thread).
  Status EnsureResident(RunState& run);
  // Offloads the least recently used resident runs beyond the budget, sparing `busy` ones.
  void EnforceMemoryBudget();
  void RunForwardBackward(std::vector<std::pair<RunState*, QueuedItem*>>& batch);
  Result<Output> RunOptimStep(RunState& run, const OptimStepWork& work);
  Result<Output> RunSave(RunState& run, const SaveWork& work);
  // The checkpoint's files in `dir` (a fresh temporary directory): weights, optimizer state for a
  // training checkpoint, openrl_checkpoint.json; an export's files age-encrypted when asked.
  Status WriteCheckpointFiles(RunState& run, const SaveWork& work, const std::string& dir);
  Result<Output> RunLoad(RunState& run, const LoadWork& work);
  // The weights a sampling session on a saved checkpoint uses: a LoRA adapter, or full weights.
  Status LoadSamplerWeights(const std::string& path, SamplerState& sampler);

  // scheduler_sample.cc (continuous batching; engine thread only)
  std::map<const model::Transformer*, ActiveGeneration> generations;
  // Queued sample requests join the running generations (a refused one fails at once); returns
  // how many requests finished (failed) here.
  int64_t AdmitSamples(std::vector<std::pair<SampleWork, Done>>& batch);
  // One decode step of every running generation; returns how many requests completed.
  int64_t StepGenerations();
  int64_t FailGeneration(ActiveGeneration& gen, const Status& why);
  // Takes the cancelled requests' rows out of the running generations and fails those requests
  // with CANCELLED; returns how many.
  int64_t DropCancelled();
  // Rows decoding now, over every generation (for the metrics gauge).
  int64_t GenerationRows() const;
};

std::string NowIso();
// A deep copy of every weight (for full fine-tuning: a private copy of a base, or a snapshot).
std::unique_ptr<model::Transformer> CopyWeights(const model::Transformer& m, at::ScalarType dtype);

}  // namespace openrl::engine
