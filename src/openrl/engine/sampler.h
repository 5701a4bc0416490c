// Sampler: batched generation over ragged prompts with a KV cache (left-padded prefill, one
// decode step per token for every live row, finished rows leaving the batch, new rows joining
// between steps: continuous batching), per-row adapters, and the usual controls: temperature, top-k, top-p, min-p, seed, stop tokens and
// stop strings, max tokens; logprobs of sampled tokens with top-k alternatives; prompt logprobs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/model/lora.h"
#include "openrl/model/transformer.h"
#include "openrl/tokenizer/tokenizer.h"

namespace openrl::engine {

struct SamplingParams {
  int64_t max_tokens = 16;
  double temperature = 1.0;  // 0 = greedy
  double top_p = 1.0;
  int64_t top_k = 0;         // 0 or -1 = off
  double min_p = 0.0;
  std::optional<uint64_t> seed;
  std::vector<int64_t> stop_token_ids;        // e.g. the model's eos ids
  std::vector<std::vector<int32_t>> stop_token_sequences;
  std::vector<std::string> stop_strings;      // needs a tokenizer
  int64_t top_logprobs = 0;                   // alternatives per sampled token
  bool prompt_logprobs = false;
  int64_t prompt_top_logprobs = 0;
  // Prompt scoring beyond prompt_logprobs, done in the prefill (the scheduler asks it of a
  // request's first sample only). Row t - 1 of each is prompt position t (position 0 has no context).
  int64_t prompt_logprobs_last_n = 0;  // > 0: prompt logprobs (and their top-k) of the last n tokens only
  std::vector<std::vector<int32_t>> prompt_target_ids;  // per row: ids whose logprobs to return; -1 = none
  int64_t prompt_alt_tokens = 0;  // per row: draws, with replacement, at the temperature (0: the argmax)
  Status Validate(int64_t vocab_size) const;
};

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct SampleRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
  const model::LoraAdapter* adapter = nullptr;  // nullptr = base model
};

struct SampleResult {
  std::vector<int32_t> tokens;   // generated, including a matched stop token
  std::vector<float> logprobs;   // of each generated token under the sampling temperature
  std::vector<std::vector<TokenLogprob>> top_logprobs;
  std::string finish_reason;     // "stop" | "length"
  std::vector<std::optional<float>> prompt_logprobs;  // first entry null
  std::vector<std::vector<TokenLogprob>> prompt_top_logprobs;
  // Logprobs of params.prompt_target_ids, in their layout (0 where the id is -1), and the
  // params.prompt_alt_tokens draws per prompt position after the first. Like prompt_logprobs,
  // these are the model's own log-softmax (temperature 1).
  std::vector<std::vector<float>> prompt_target_logprobs;
  std::vector<std::vector<TokenLogprob>> prompt_alt_tokens;
};

// Iteration-level continuous batching over one model: requests join between decode steps
// (prefilled on their own, then merged into the running KV cache) and leave as soon as they
// finish, so a long generation never holds a short one back. Rows may use different adapters;
// an adapter must outlive the rows that use it. Not thread-safe: one engine thread drives it.
// What sample requests ask of a KV cache: their rows, longest prompt and most new tokens.
struct CacheDemand {
  int64_t rows = 0, longest_prompt = 0, most_new_tokens = 1;
  void Add(int64_t n, int64_t prompt, int64_t max_tokens) {
    rows += n;
    longest_prompt = std::max(longest_prompt, prompt);
    most_new_tokens = std::max(most_new_tokens, max_tokens);
  }
};

class GenerationBatch {
 public:
  // `tok` is needed only for stop strings.
  explicit GenerationBatch(const model::Transformer& model, const tokenizer::Tokenizer* tok = nullptr);
  ~GenerationBatch();
  GenerationBatch(const GenerationBatch&) = delete;
  GenerationBatch& operator=(const GenerationBatch&) = delete;

  // Validates every request (errors name "request i"; none joins then), prefills them (prompt
  // logprobs are computed here) and adds their rows. Returns one ticket per request.
  Result<std::vector<int64_t>> Add(const std::vector<SampleRequest>& requests);
  // One step for every row: samples its next token, retires the rows that finished, runs the
  // model once over the others. Returns the finished rows with their tickets.
  Result<std::vector<std::pair<int64_t, SampleResult>>> Step();
  // Takes these tickets' rows out between steps (cancelled requests), freeing their cache slots;
  // the other rows go on exactly as before. Unknown tickets are ignored.
  Status Remove(const std::vector<int64_t>& tickets);
  int64_t rows() const;
  bool empty() const { return rows() == 0; }
  // Bytes of keys and values the batch's cache would hold once requests with this demand joined
  // (Add sizes the joined cache the same way).
  int64_t CacheBytesAfter(const CacheDemand& newcomers) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Generates for every request in one batch (a GenerationBatch run to completion).
Result<std::vector<SampleResult>> Generate(const model::Transformer& model,
                                           const std::vector<SampleRequest>& requests,
                                           const tokenizer::Tokenizer* tok = nullptr);

}  // namespace openrl::engine
