// Hugging Face model directories: read config.json, generation_config.json and *.safetensors
// (single or sharded) into a Transformer, and write the same layout back (copying the
// tokenizer files along). Tensors convert between formats::TensorView and at::Tensor here.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/formats/safetensors.h"
#include "openrl/model/config.h"
#include "openrl/model/transformer.h"

namespace openrl::model {

// "float32" | "bfloat16" | "float16" (also "fp32", "bf16", "fp16") → dtype.
Result<at::ScalarType> ParseDtype(std::string_view name);
std::string DtypeName(at::ScalarType t);  // "float32", "bfloat16", "float16"
// "cpu", "cuda", "cuda:1" → device; CUDA must be available in this build and machine.
Result<at::Device> ParseDevice(const std::string& name);

// A copy of the view's bytes as a tensor of its dtype (F32, F16, BF16, F64, I64, I32, I8, U8, BOOL).
Result<at::Tensor> TensorFromView(const formats::TensorView& view, std::string_view source);

struct LoadOptions {
  std::optional<at::ScalarType> dtype;  // default: the checkpoint's torch_dtype
  at::Device device = at::kCPU;
  bool weights = true;  // false: config.json and generation_config.json only (ModelDir::model stays null)
};

struct ModelDir {
  std::string path;
  ModelConfig config;
  Json generation_config = Json::object();  // empty when the file is absent
  std::unique_ptr<Transformer> model;
};

// The ids that end a generation: generation_config.json's eos_token_id, else config.json's.
std::vector<int64_t> StopTokenIds(const ModelDir& dir);

// Reads config.json only (no weights): enough for `openrl model info`.
Result<ModelConfig> ReadModelConfig(const std::string& dir);
Result<ModelDir> LoadModelDir(const std::string& dir, const LoadOptions& opts = {});

struct SaveOptions {
  at::ScalarType dtype = at::kFloat;
  uint64_t max_shard_bytes = 2'000'000'000;
  std::string tokenizer_from;  // directory whose tokenizer files are copied, if any
  Json generation_config;      // written when not null
};
Status SaveModelDir(const Transformer& model, const std::string& dir, const SaveOptions& opts);

// Writes named tensors as one safetensors file (used for adapters and tests).
Status WriteTensors(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                    const std::string& path, const std::map<std::string, std::string>& metadata);
// Every tensor of one safetensors file (e.g. optimizer state), copied into memory, in file order.
Result<std::vector<std::pair<std::string, at::Tensor>>> ReadTensors(const std::string& path);

}  // namespace openrl::model
