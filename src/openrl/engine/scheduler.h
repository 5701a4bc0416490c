// Scheduler: the multi-tenant engine behind the training API. Base models are loaded once; each
// training run owns a LoRA adapter over one base and its AdamW state. Work arrives as items tagged
// with the run and its seq_id; one engine thread executes them in clock cycles:
//  * per run, strictly in seq_id order (chunks of one call may arrive in any order);
//  * forward_backward items of every run that is ready are packed into one pass over the base
//    (rows of different runs use different adapters; each run's loss and gradients stay its own);
//  * then each run's next item if it is not a forward/backward (the optimizer step a client sends
//    right behind its forward_backward runs in the same cycle), saves and loads, per adapter;
//  * sample items of all sessions are batched into one generation (rows with different adapters).
// Results go back through the item's callback; the API layer encodes them and completes the
// durable future. Checkpoints are PEFT adapter directories (+ optimizer state) under the data
// directory, written atomically and recorded in the metadata store before they are acknowledged.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "openrl/core/age.h"
#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/engine/losses.h"
#include "openrl/engine/optimizer.h"
#include "openrl/engine/sampler.h"
#include "openrl/model/checkpoint.h"
#include "openrl/model/lora.h"
#include "openrl/store/metadata_store.h"
#include "openrl/tokenizer/tokenizer.h"

namespace openrl::engine {

struct SchedulerOptions {
  std::string data_dir;                 // checkpoints live under <data_dir>/checkpoints
  at::ScalarType dtype = at::kFloat;    // base weights; adapters are always fp32
  at::Device device = at::kCPU;         // where weights, adapters and optimizer state live
  int64_t max_tokens_per_pass = 16384;  // packed rows are split into passes of at most this
  int64_t max_queued_items = 4096;      // beyond: RESOURCE_EXHAUSTED (429 with Retry-After)
  // Adapters (with their AdamW moments) held in memory; beyond, the least recently used runs are
  // offloaded to <data_dir>/offload and brought back when their next request runs.
  int64_t max_resident_runs = 64;
  // Keys and values the running generations of one model hold at most (--max-kv-cache-mb): a request that
  // would take the cache past it waits for rows to finish; one that needs more on its own is
  // refused (INVALID_ARGUMENT) when it is submitted.
  int64_t max_kv_cache_bytes = int64_t{8} << 30;
  // When work arrives at an idle engine while another client that sent work within `client_active`
  // has none queued, wait up to this long before forming the cycle, so that client's request, sent
  // at about the same time, is packed into it. A client is a training run together with the
  // sampling sessions on its weights; a lone client's requests start at once.
  std::chrono::milliseconds gather_window{5};
  std::chrono::milliseconds client_active{10'000};
  // Running generations decode for at least this long before ready training work takes the
  // engine: short generations (an RL group) finish at once, since their clients wait on them,
  // and a long one cannot hold training back for more than about this.
  std::chrono::milliseconds decode_slice{1000};
  // Threads of the engine's tensor work (ATen's OpenMP and MKL); 0: ATen's default on the thread
  // that calls Start().
  int intra_op_threads = 0;
};

// The calling thread's threads of tensor work (ATen's OpenMP and MKL) from now on, whatever
// another thread sets later. ATen gives each thread, at its first parallel op, the count that any
// thread set last; the flag that marks it done is an inline thread_local in ATen's headers, so
// libtorch and this binary each hold one, and both are passed before the count is set.
void SetTensorThreadsOfThisThread(int threads);

// From now on, tensor work on the calling thread runs serially: its ATen and MKL ops start no
// OpenMP worker threads. For the threads beside the engine that do light tensor work (the API's
// request handlers). libgomp lets a waiting OpenMP thread sleep at once, instead of spinning, as
// soon as the process holds more OpenMP threads than cores; then every parallel op of the engine
// pays for waking its workers (on 2 cores a forward_backward took 1.36x as long). So the engine's
// team should be the only one that stays.
void SerialTensorWorkOnThisThread();

// One datum of a forward/backward call: the input tokens and its loss inputs, each of shape (T,):
// "target_tokens" (int64) and the loss's float32 inputs ("weights", "logprobs", "advantages"...).
struct TrainDatum {
  std::vector<int32_t> tokens;
  std::map<std::string, at::Tensor> loss_inputs;
};

struct ForwardBackwardWork {
  std::vector<TrainDatum> data;
  LossSpec loss;
  bool forward_only = false;
};
struct ForwardBackwardOutput {
  // Per datum, named per-token outputs: always "logprobs", plus the loss's own.
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> outputs;
  std::map<std::string, double> metrics;  // "name:reduction" → value; always "loss:sum"
};

struct OptimStepWork {
  AdamParams adam;
};
struct OptimStepOutput {
  std::map<std::string, double> metrics;
};

// Training checkpoints hold the adapter (or every weight) and the optimizer state; sampler
// checkpoints the weights a sampling client needs; external ones are an export for use elsewhere:
// the PEFT adapter (or, for full fine-tuning, a Hugging Face model directory) and nothing else,
// each file optionally age-encrypted to the client's recipients (stored as "<file>.age").
enum class CheckpointKind { kTraining, kSampler, kExternal };
struct SaveWork {
  CheckpointKind kind = CheckpointKind::kTraining;
  std::string name;                 // empty for an unnamed sampler snapshot
  std::optional<int64_t> ttl_seconds;
  Json user_metadata = Json::object();
  bool make_sampling_session = false;  // save_weights_and_get_sampling_client
  std::vector<crypto::AgeRecipient> age_recipients;  // kExternal: encrypt every file to these
};
struct SaveOutput {
  std::string path;                 // tinker://<run>/{weights|sampler_weights|external_weights}/<name>
  std::string sampling_session_id;  // when make_sampling_session
  int64_t size_bytes = 0;
};

struct LoadWork {
  std::string path;  // tinker://<run>/weights/<name>
  bool with_optimizer = false;
};
struct LoadOutput {
  std::string path;
};

struct SampleWork {
  std::string sampling_session_id;
  std::string cancel_id;  // the API future's id: CancelSample(cancel_id) stops the request
  std::vector<int32_t> prompt;
  int64_t num_samples = 1;
  SamplingParams params;
};
struct SampleOutput {
  std::vector<SampleResult> sequences;
  std::vector<std::optional<float>> prompt_logprobs;            // when asked
  std::vector<std::vector<TokenLogprob>> prompt_top_logprobs;  // when asked
  std::vector<std::vector<float>> prompt_target_logprobs;      // params.prompt_target_ids' layout
  std::vector<std::vector<TokenLogprob>> prompt_alt_tokens;    // params.prompt_alt_tokens per position
};

using Work = std::variant<ForwardBackwardWork, OptimStepWork, SaveWork, LoadWork, SampleWork>;
using Output = std::variant<ForwardBackwardOutput, OptimStepOutput, SaveOutput, LoadOutput, SampleOutput>;
using Done = std::function<void(Result<Output>)>;

struct RunInfo {
  std::string id, base_model, key_id, session_id;
  model::LoraConfig lora;
  bool train_unembed = false;
  bool live = false;  // false: its in-memory state was lost (restart) until a load_state
  bool offloaded = false;  // its state is on disk (memory budget) and comes back when it is used
  bool full_finetune = false;  // LoRA rank 0: trains a private copy of every base weight
  bool frozen = false;  // holds weights copied by copy_weights only: accepts no work
  Json user_metadata = Json::object();
  std::string created_at, last_request_at;
};

struct BaseModelInfo {
  std::string name, path;
  int64_t max_context = 0;
  int64_t vocab_size = 0;
  std::vector<int64_t> eos_ids;  // implicit stop tokens when a sample request names none
};

struct CheckpointInfo {
  std::string run_id, kind, name, path, created_at;  // kind: "training" | "sampler" | "external"
  std::optional<std::string> expires_at;
  int64_t size_bytes = 0;
  Json user_metadata = Json::object();
  bool is_public = false;  // published: readable by every API key (the API layer decides what that allows)
  std::string TinkerPath() const;  // tinker://run/weights/name
  // The checkpoint's files, relative to `path`, sorted (an export's files are what a download fetches).
  Result<std::vector<std::string>> Files() const;
};

struct SamplingSessionInfo {
  std::string id, base_model;
  std::optional<std::string> model_path;
};

class Scheduler {
 public:
  Scheduler(store::MetadataStore& db, SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Registers a base model under `name` (a Hugging Face directory or a GGUF file); persisted.
  Status AddBaseModel(const std::string& name, const std::string& path);
  std::vector<BaseModelInfo> BaseModels();
  Result<BaseModelInfo> BaseModel(const std::string& name);
  // The model directory (tokenizer files included) for a base model name.
  Result<std::string> BaseModelDir(const std::string& name);

  Status Start();  // loads persisted runs (not live until loaded) and starts the engine thread
  void Stop();     // finishes the current cycle, fails queued items

  // Creates run `run_id` with a fresh adapter (A from `seed`, B = 0); loads the base if needed.
  // LoRA rank 0 asks for full fine-tuning instead (beyond what Tinker offers): the run trains a
  // private fp32 copy of every base weight, in passes of its own, with AdamW over all of them
  // (about 4x the model's fp32 size in memory); its checkpoints are full Hugging Face directories.
  // ALREADY_EXISTS when the id is taken.
  Result<RunInfo> CreateRun(const std::string& run_id, const std::string& key_id, const std::string& session_id,
                            const std::string& base_model, const model::LoraConfig& lora, bool train_unembed,
                            uint64_t seed, const Json& user_metadata);
  // copy_weights: a run that only holds copied checkpoints and accepts no work, shaped like `like`
  // (its base model and LoRA configuration). ALREADY_EXISTS when the id is taken.
  Result<RunInfo> CreateFrozenRun(const std::string& run_id, const std::string& key_id,
                                  const std::string& session_id, const RunInfo& like);
  Result<RunInfo> Run(const std::string& run_id);
  std::vector<RunInfo> Runs(const std::optional<std::string>& key_id);

  // Queues work for a run; runs when every lower seq_id of that run has run. seq_id 0 (none
  // given) runs before the run's next numbered item, in arrival order. RESOURCE_EXHAUSTED when
  // the queue is full.
  Status Submit(const std::string& run_id, int64_t seq_id, Work work, Done done);
  // Marks a seq_id as consumed without work (a request refused before it was queued), so later
  // requests of the run are not held back waiting for it.
  void Skip(const std::string& run_id, int64_t seq_id);
  // Sampling is not ordered per run.
  Status SubmitSample(SampleWork work, Done done);
  // Stops the sample request submitted with this cancel_id: a queued one fails at once with
  // CANCELLED; a running one leaves its generation before the next decode step, its rows freed,
  // and then fails with CANCELLED. Unknown or finished ids are ignored.
  void CancelSample(const std::string& cancel_id);

  Result<SamplingSessionInfo> CreateSamplingSession(const std::string& session_id, const std::string& base_model,
                                                    const std::string& model_path);
  Result<SamplingSessionInfo> SamplingSession(const std::string& id);

  Result<std::vector<CheckpointInfo>> Checkpoints(const std::string& run_id);
  Result<CheckpointInfo> Checkpoint(const std::string& tinker_path);
  Status DeleteCheckpoint(const std::string& tinker_path);
  // Sets the checkpoint to expire `ttl_seconds` from now, or never (nullopt).
  Status SetCheckpointTtl(const std::string& tinker_path, std::optional<int64_t> ttl_seconds);
  Status SetCheckpointPublic(const std::string& tinker_path, bool is_public);
  // Copies checkpoint `source_path` into run `dest_run_id` (same kind and name, private, expiring
  // `ttl_seconds` from now or never). The copy shares the source's files (hard links; a byte copy
  // only where the filesystem cannot link), and either can be deleted without touching the other.
  Result<CheckpointInfo> CopyCheckpoint(const std::string& source_path, const std::string& dest_run_id,
                                        std::optional<int64_t> ttl_seconds);
  Result<int64_t> SweepExpiredCheckpoints();

  // Engine occupancy since start: busy seconds and wall seconds (for the packing bench).
  std::pair<double, double> BusyTime() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// tinker://<run>/{weights|sampler_weights|external_weights}/<name> → (run, kind, name); errors
// quote the path.
struct TinkerPath {
  std::string run_id;
  CheckpointKind kind;
  std::string name;
};
Result<TinkerPath> ParseTinkerPath(const std::string& path);
std::string CheckpointKindName(CheckpointKind kind);     // "training" | "sampler" | "external"
std::string CheckpointKindSegment(CheckpointKind kind);  // "weights" | "sampler_weights" | "external_weights"

}  // namespace openrl::engine
