// ModelConfig: the architecture of a decoder-only transformer, read from a Hugging Face
// config.json (model_type llama, qwen3, gemma3_text, or gemma3 with a text_config) in either the
// classic layout (rope_theta / rope_scaling) or transformers 5's rope_parameters, and written back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"

namespace openrl::model {

// The ids of an `eos_token_id` field: one id or a list of them (entries that are not integers are
// skipped; a missing or null field gives none).
std::vector<int64_t> EosTokenIds(const Json& field);

enum class Family { kLlama, kQwen3, kGemma3 };
std::string_view FamilyName(Family f);

// Rotary embedding parameters of one attention kind (Gemma 3 has one for local, one for global).
struct RopeParams {
  std::string type = "default";  // default | linear | llama3
  double theta = 10000.0;
  double factor = 1.0;                       // linear, llama3
  double low_freq_factor = 1.0;              // llama3
  double high_freq_factor = 4.0;             // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  Family family = Family::kLlama;
  std::string model_type;  // as written in config.json
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  std::string hidden_act = "silu";  // silu | gelu_pytorch_tanh
  RopeParams rope;                  // global / full attention
  RopeParams rope_local;            // Gemma 3 sliding layers
  // Gemma 3
  double query_pre_attn_scalar = 0;  // attention scale = query_pre_attn_scalar^-0.5 when > 0
  std::optional<int64_t> sliding_window;
  std::vector<bool> layer_is_sliding;  // per layer
  std::optional<double> final_logit_softcapping;
  std::optional<double> attn_logit_softcapping;
  std::string torch_dtype = "float32";
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> pad_token_id;

  bool has_qk_norm() const { return family != Family::kLlama; }
  bool gemma() const { return family == Family::kGemma3; }
  double attention_scale() const;
  // Parameter count of the base model (embeddings counted once when tied).
  int64_t NumParameters() const;

  static Result<ModelConfig> FromJson(const Json& j, std::string_view source);
  static Result<ModelConfig> FromFile(const std::string& path);
  // config.json in the layout transformers 5 writes, loadable by AutoConfig.
  Json ToJson() const;
};

}  // namespace openrl::model
