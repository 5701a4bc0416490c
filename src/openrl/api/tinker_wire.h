// The Tinker wire formats: forward_backward requests as protobuf (what SDKs >= 0.25 send; the
// schema is generated from the pinned SDK) or JSON (the pre-0.25 form, handy for curl), and the
// protobuf results SDKs >= 0.25 require for forward_backward and sample. Every decoding error
// names the field.
#pragma once

#include <string>

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

std::string EncodeForwardBackwardProto(const engine::ForwardBackwardOutput& out);
std::string EncodeSampleProto(const engine::SampleOutput& out);

// {"chunks": [{"type": "encoded_text", "tokens": [...]}, ...]} → tokens.
Result<std::vector<int32_t>> DecodeModelInput(const Json& j, const std::string& where);

}  // namespace openrl::api
