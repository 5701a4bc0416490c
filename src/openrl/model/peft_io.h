// LoRA adapters in PEFT's layout: adapter_config.json + adapter_model.safetensors, readable by
// peft.PeftModel.from_pretrained and written by it. Also merging an adapter into the base.
#pragma once

#include <memory>
#include <string>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/model/lora.h"
#include "openrl/model/transformer.h"

namespace openrl::model {

Result<LoraConfig> LoraConfigFromPeft(const Json& j, std::string_view source);
Json LoraConfigToPeft(const LoraConfig& cfg, const std::string& base_model);

// Loads and validates against the base model's config (every pair present, shapes right).
Result<std::unique_ptr<LoraAdapter>> LoadPeftAdapter(const std::string& dir, const ModelConfig& model,
                                                     at::ScalarType dtype, at::Device device);
Status SavePeftAdapter(const LoraAdapter& adapter, const std::string& dir, const std::string& base_model);

// W += scale·B·A for every pair, in place (the merged model no longer needs the adapter).
Status MergeAdapter(Transformer& model, const LoraAdapter& adapter);

}  // namespace openrl::model
