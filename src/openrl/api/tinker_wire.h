// The Tinker wire formats: forward_backward requests as protobuf (what SDKs >= 0.25 send; the
// schema is generated from the pinned SDK) or JSON (the pre-0.25 form, handy for curl), and the
// protobuf results SDKs >= 0.25 require for forward_backward and sample. Every decoding error
// names the field.
#pragma once

#include <string>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/engine/scheduler.h"

namespace openrl::api {

struct ForwardBackwardCall {
  std::string model_id;
  int64_t seq_id = 0;
  engine::ForwardBackwardWork work;
  // loss_fn "custom": loss_fn_config.loss_id, for the caller to resolve into work.loss.custom.
  std::string custom_loss_id;
};

// protobuf tinker_public.ForwardBackwardRequest (already decompressed). `call.model_id` and
// `call.seq_id` are filled in first, so a caller can account for the seq_id of a refused request.
Status DecodeForwardBackwardProto(const std::string& body, ForwardBackwardCall& call);
// {"forward_backward_input": {"data", "loss_fn", "loss_fn_config", "forward_only"?}, "model_id", "seq_id"}
Status DecodeForwardBackwardJson(const Json& body, ForwardBackwardCall& call);

// A sample request's target_prompt_logprobs: a 2-D int64 TensorData [len(prompt) - 1, K], dense or
// sparse CSR, whose row i names token ids to score at prompt position i + 1 (-1: none). The answer
// is a float32 tensor of the same shape and layout.
struct PromptTargets {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> crow, col;         // sparse CSR; both empty when dense
  std::vector<std::vector<int32_t>> ids;  // per row: its cells' ids, in the layout's order
};
// Checks everything but the row count against the prompt: integer ids in [-1, vocab_size), at
// least one id, at most `max_distinct` distinct ids; errors name `where` and the offending entry.
Result<PromptTargets> DecodePromptTargets(const Json& j, int64_t vocab_size, int64_t max_distinct,
                                          const std::string& where);

std::string EncodeForwardBackwardProto(const engine::ForwardBackwardOutput& out);
// `targets`: the request's target_prompt_logprobs (their layout is the answer's); `alt_tokens_k`:
// its prompt_alt_tokens_k (0: none asked).
std::string EncodeSampleProto(const engine::SampleOutput& out, const PromptTargets* targets = nullptr,
                              int64_t alt_tokens_k = 0);

// {"chunks": [{"type": "encoded_text", "tokens": [...]}, ...]} → tokens.
Result<std::vector<int32_t>> DecodeModelInput(const Json& j, const std::string& where);

}  // namespace openrl::api
