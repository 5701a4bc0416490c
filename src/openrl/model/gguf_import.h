// GGUF checkpoints (llama.cpp's format) in and out of the engine's Hugging Face layout.
//
// Import maps llama.cpp tensor names and metadata (architectures llama, qwen3, gemma3) to a
// transformers config.json and parameter names, undoing what llama.cpp's converter does: the
// Q/K row permutation of Llama attention, Gemma's "+1" on RMSNorm weights. Quantized tensors are
// dequantized (gguf_quant.h). The tokenizer comes back from metadata (gguf_tokenizer.h).
//
// Export merges an optional LoRA adapter into a model and writes a GGUF that llama.cpp loads:
// weights in f16, q8_0 or q4_0 (norms stay f32), llama.cpp's names and permutation, the
// architecture's metadata and the tokenizer.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/formats/gguf.h"
#include "openrl/model/config.h"
#include "openrl/model/gguf_tokenizer.h"
#include "openrl/model/transformer.h"

namespace openrl::model {

// config.json (transformers 5 layout) for the model a GGUF describes.
Result<Json> ConfigJsonFromGguf(const formats::gguf::GgufFile& file);

// The Hugging Face parameter name of a llama.cpp tensor name ("blk.3.attn_q.weight" ->
// "model.layers.3.self_attn.q_proj.weight"); empty when it has none (e.g. rope_freqs).
std::string HfTensorName(std::string_view gguf_name, Family family);
// The inverse; empty when the engine has no such parameter.
std::string GgufTensorName(std::string_view hf_name, Family family);

// What llama.cpp's converter does to a parameter, and its inverse: Llama Q/K rows have the two
// rotary halves of each head interleaved, Gemma RMSNorm weights are stored as 1 + w. `t` is fp32
// in PyTorch layout; `gguf_name` is the llama.cpp name. Errors name the tensor when the rows do
// not split into the config's heads.
enum class LayoutDirection { kToGguf, kFromGguf };
Result<at::Tensor> ConvertLlamaCppLayout(const ModelConfig& cfg, const std::string& gguf_name, at::Tensor t,
                                         LayoutDirection direction);

struct ImportedModel {
  ModelConfig config;
  Json config_json;
  Json generation_config;
  TokenizerFiles tokenizer;
  Json provenance;  // openrl_import.json: source file, sha256, GGUF metadata we do not map
  // Hugging Face names -> fp32 tensors in PyTorch layout.
  std::vector<std::pair<std::string, at::Tensor>> tensors;
};

// Reads, validates and dequantizes a GGUF file.
Result<ImportedModel> ImportGguf(const std::string& path);

struct ImportOptions {
  at::ScalarType dtype = at::kBFloat16;  // safetensors dtype: float32 | bfloat16 | float16
};
// Writes a normal model directory: model.safetensors (sharded when large), config.json,
// generation_config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja,
// openrl_import.json. Written into a temporary sibling directory and renamed into place, so an
// interrupted import leaves no half-written model.
Status WriteImportedModel(const ImportedModel& m, const std::string& out_dir, const ImportOptions& opts);

// A GGUF given where a model directory is expected: imported once into
// $OPENRL_CACHE/gguf/<key> (key: the file's path, size and mtime) in float32 and reused; an
// older import of the same path is removed. Returns the directory.
Result<std::string> ImportGgufCached(const std::string& path);
// True when `path` is a regular file that starts with the GGUF magic.
bool IsGgufFile(const std::string& path);

enum class ExportType { kF16, kQ8_0, kQ4_0 };
Result<ExportType> ParseExportType(std::string_view name);

// Writes `model` (adapter already merged) with the tokenizer of `tokenizer_dir` as a GGUF file.
Status ExportGguf(const Transformer& model, const std::string& tokenizer_dir, const std::string& out_path,
                  ExportType type, const std::string& name);

}  // namespace openrl::model
