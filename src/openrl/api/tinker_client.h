// A C++ client of the Tinker wire API, for OpenRL's own loops (the quickstart's RL stage) and
// tools: JSON requests, protobuf results (decoded with the same generated codec the server uses),
// futures polled until done, seq_ids numbered per training run as the SDK numbers them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/http/client.h"

namespace openrl::api {

struct ClientDatum {
  std::vector<int32_t> tokens;                            // model input
  std::vector<int32_t> targets;                           // one per input token
  std::map<std::string, std::vector<float>> float_inputs;  // "weights", "logprobs", "advantages"
};

struct ClientForwardBackward {
  std::vector<std::vector<float>> logprobs;  // per datum, per target token
  std::map<std::string, double> metrics;     // "loss:sum", ...
};

struct ClientSample {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  bool stopped = false;  // ended on a stop token (else: max_tokens)
};

struct ClientSamplingParams {
  int64_t max_tokens = 16;
  double temperature = 1.0;
  std::vector<int64_t> stop_tokens;  // empty: the model's end-of-sequence tokens
  std::optional<uint64_t> seed;
};

class TinkerClient {
 public:
  TinkerClient(std::string host, uint16_t port, std::string api_key);

  Status CreateSession();
  // A LoRA training run on `base_model`; returns its model id.
  Result<std::string> CreateLoraRun(const std::string& base_model, int64_t rank, uint64_t seed);
  Result<ClientForwardBackward> ForwardBackward(const std::string& model_id, const std::vector<ClientDatum>& data,
                                                const std::string& loss_fn, bool forward_only = false);
  Result<Json> OptimStep(const std::string& model_id, double learning_rate);
  // save_weights_and_get_sampling_client: a sampling session on the run's current weights.
  Result<std::string> SamplerForCurrentWeights(const std::string& model_id);
  Result<std::string> SamplerForBase(const std::string& base_model);
  Result<std::vector<ClientSample>> Sample(const std::string& sampling_session_id, const std::vector<int32_t>& prompt,
                                           int64_t num_samples, const ClientSamplingParams& params);
  // Every prompt's request is sent before any result is awaited, so the engine batches them into
  // one generation. Prompt i samples with seed params.seed + i (when a seed is given).
  Result<std::vector<std::vector<ClientSample>>> SampleMany(const std::string& sampling_session_id,
                                                            const std::vector<std::vector<int32_t>>& prompts,
                                                            int64_t num_samples, const ClientSamplingParams& params);
  Result<std::string> SaveState(const std::string& model_id, const std::string& name);
  // save_weights_external: the run's weights as an export (PEFT adapter, or a model directory for
  // full fine-tuning); returns its tinker:// path.
  Result<std::string> ExportWeights(const std::string& model_id, const std::string& name);
  // Fetches every file of an export by its signed URL (no API key) into `out_dir`, which is
  // created; returns the file names.
  Result<std::vector<std::string>> DownloadExport(const std::string& tinker_path, const std::string& out_dir);

 private:
  Result<Json> PostJson(const std::string& path, const Json& body);
  // save_weights / save_weights_external under `name`; returns the tinker:// path.
  Result<std::string> SaveWeights(const std::string& type, const std::string& model_id, const std::string& name);
  // Polls retrieve_future until the result is ready; returns (content type, body).
  Result<std::pair<std::string, std::string>> Await(const std::string& request_id);
  Result<std::string> AwaitJsonField(const Json& accepted, const std::string& field);
  Result<std::string> SubmitSample(const std::string& sampling_session_id, const std::vector<int32_t>& prompt,
                                   int64_t num_samples, const ClientSamplingParams& params);
  Result<std::vector<ClientSample>> AwaitSample(const std::string& request_id);
  int64_t NextSeq(const std::string& model_id) { return ++seq_[model_id]; }

  http::Client http_;
  std::string api_key_;
  std::string session_id_;
  int64_t model_seq_ = 0, sampler_seq_ = 0;
  std::map<std::string, int64_t> seq_;
};

}  // namespace openrl::api
