#include "openrl/model/config.h"

#include <cmath>

namespace openrl::model {

std::vector<int64_t> EosTokenIds(const Json& field) {
  std::vector<int64_t> ids;
  if (field.is_number_integer()) ids.push_back(field.get<int64_t>());
  if (field.is_array())
    for (const Json& x : field)
      if (x.is_number_integer()) ids.push_back(x.get<int64_t>());
  return ids;
}
namespace {

Result<RopeParams> ParseRope(const Json& j, double default_theta, std::string_view where) {
  RopeParams r;
  r.theta = default_theta;
  if (j.is_null()) return r;
  if (!j.is_object()) return InvalidArgument(std::string(where) + ": expected an object");
  std::string type = j.value("rope_type", j.value("type", std::string("default")));
  r.type = type;
  OPENRL_ASSIGN_OR_RETURN(r.theta, GetFieldOr<double>(j, "rope_theta", default_theta, where));
  if (type == "default") return r;
  if (type == "linear") {
    OPENRL_ASSIGN_OR_RETURN(r.factor, GetField<double>(j, "factor", where));
  } else if (type == "llama3") {
    OPENRL_ASSIGN_OR_RETURN(r.factor, GetField<double>(j, "factor", where));
    OPENRL_ASSIGN_OR_RETURN(r.low_freq_factor, GetField<double>(j, "low_freq_factor", where));
    OPENRL_ASSIGN_OR_RETURN(r.high_freq_factor, GetField<double>(j, "high_freq_factor", where));
    OPENRL_ASSIGN_OR_RETURN(r.original_max_position_embeddings,
                            GetField<int64_t>(j, "original_max_position_embeddings", where));
    if (r.high_freq_factor <= r.low_freq_factor)
      return InvalidArgument(std::string(where) + ": high_freq_factor must exceed low_freq_factor");
  } else {
    return InvalidArgument(std::string(where) + ": unsupported rope_type '" + type +
                           "' (supported: default, linear, llama3)");
  }
  if (!(r.factor > 0)) return InvalidArgument(std::string(where) + ": factor must be positive");
  return r;
}

Json RopeToJson(const RopeParams& r) {
  Json j = {{"rope_type", r.type}, {"rope_theta", r.theta}};
  if (r.type == "linear") j["factor"] = r.factor;
  if (r.type == "llama3") {
    j["factor"] = r.factor;
    j["low_freq_factor"] = r.low_freq_factor;
    j["high_freq_factor"] = r.high_freq_factor;
    j["original_max_position_embeddings"] = r.original_max_position_embeddings;
  }
  return j;
}

// Upper bounds far above any real model, so an absurd config is an error, not an allocation.
constexpr int64_t kMaxDimension = int64_t{1} << 24;  // hidden, intermediate, vocab, context
constexpr int64_t kMaxCount = 4096;                   // layers, heads

Status RequirePositive(int64_t v, const char* field, std::string_view src, int64_t max = kMaxDimension) {
  if (v > 0 && v <= max) return Status::Ok();
  return InvalidArgument(std::string(src) + ": field '" + field + "' must be in [1, " + std::to_string(max) +
                         "], got " + std::to_string(v));
}

Status ParseRopeAll(const Json& j, ModelConfig& c, std::string_view src) {
  std::string s(src);
  double theta = c.gemma() ? 1000000.0 : 10000.0;
  OPENRL_ASSIGN_OR_RETURN(theta, GetFieldOr<double>(j, "rope_theta", theta, src));
  double local_theta = 10000.0;
  OPENRL_ASSIGN_OR_RETURN(local_theta, GetFieldOr<double>(j, "rope_local_base_freq", local_theta, src));
  const Json& params = j.contains("rope_parameters") ? j["rope_parameters"] : Json();
  if (params.is_object() && c.gemma() &&
      (params.contains("full_attention") || params.contains("sliding_attention"))) {
    OPENRL_ASSIGN_OR_RETURN(c.rope, ParseRope(params.value("full_attention", Json()), theta,
                                              s + ": rope_parameters.full_attention"));
    OPENRL_ASSIGN_OR_RETURN(c.rope_local,
                            ParseRope(params.value("sliding_attention", Json()), local_theta,
                                      s + ": rope_parameters.sliding_attention"));
    return Status::Ok();
  }
  const Json& legacy = params.is_object() ? params : j.value("rope_scaling", Json());
  OPENRL_ASSIGN_OR_RETURN(c.rope, ParseRope(legacy, theta, s + ": rope_scaling"));
  c.rope_local = RopeParams{};
  c.rope_local.theta = local_theta;
  return Status::Ok();
}

Status ParseGemmaLayers(const Json& j, ModelConfig& c, std::string_view src) {
  std::string s(src);
  c.layer_is_sliding.assign(c.num_hidden_layers, false);
  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    const Json& lt = j["layer_types"];
    if (!lt.is_array() || static_cast<int64_t>(lt.size()) != c.num_hidden_layers)
      return InvalidArgument(s + ": field 'layer_types' must list one type per layer (" +
                             std::to_string(c.num_hidden_layers) + ")");
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      std::string t = lt[i].is_string() ? lt[i].get<std::string>() : "";
      if (t != "sliding_attention" && t != "full_attention")
        return InvalidArgument(s + ": layer_types[" + std::to_string(i) +
                               "] must be 'sliding_attention' or 'full_attention'");
      c.layer_is_sliding[i] = t == "sliding_attention";
    }
  } else if (c.gemma()) {
    int64_t pattern = 6;
    OPENRL_ASSIGN_OR_RETURN(pattern, GetFieldOr<int64_t>(j, "sliding_window_pattern", pattern, src));
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) c.layer_is_sliding[i] = (i + 1) % pattern != 0;
  }
  bool any_sliding = false;
  for (bool b : c.layer_is_sliding) any_sliding |= b;
  if (c.family == Family::kQwen3 && !j.value("use_sliding_window", false)) {
    c.layer_is_sliding.assign(c.num_hidden_layers, false);
    any_sliding = false;
  }
  if (any_sliding) {
    int64_t w = 0;
    OPENRL_ASSIGN_OR_RETURN(w, GetField<int64_t>(j, "sliding_window", src));
    OPENRL_RETURN_IF_ERROR(RequirePositive(w, "sliding_window", src));
    c.sliding_window = w;
  }
  return Status::Ok();
}

}  // namespace

std::string_view FamilyName(Family f) {
  switch (f) {
    case Family::kLlama: return "llama";
    case Family::kQwen3: return "qwen3";
    case Family::kGemma3: return "gemma3_text";
  }
  return "unknown";
}

double ModelConfig::attention_scale() const {
  if (gemma() && query_pre_attn_scalar > 0) return 1.0 / std::sqrt(query_pre_attn_scalar);
  return 1.0 / std::sqrt(static_cast<double>(head_dim));
}

int64_t ModelConfig::NumParameters() const {
  int64_t q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attn = hidden_size * q * 2 + hidden_size * kv * 2;
  int64_t mlp = 3 * hidden_size * intermediate_size;
  int64_t norms = (gemma() ? 4 : 2) * hidden_size + (has_qk_norm() ? 2 * head_dim : 0);
  int64_t emb = vocab_size * hidden_size;
  return num_hidden_layers * (attn + mlp + norms) + emb * (tie_word_embeddings ? 1 : 2) + hidden_size;
}

Result<ModelConfig> ModelConfig::FromJson(const Json& root, std::string_view src) {
  if (!root.is_object()) return InvalidArgument(std::string(src) + ": expected a JSON object");
  const Json* jp = &root;
  std::string type = root.value("model_type", "");
  // Gemma 3 multimodal checkpoints keep the language model under text_config.
  if (type == "gemma3" && root.contains("text_config") && root["text_config"].is_object()) {
    jp = &root["text_config"];
  }
  const Json& j = *jp;
  ModelConfig c;
  c.model_type = type;
  if (type == "llama") c.family = Family::kLlama;
  else if (type == "qwen3") c.family = Family::kQwen3;
  else if (type == "gemma3_text" || type == "gemma3") c.family = Family::kGemma3;
  else
    return InvalidArgument(std::string(src) + ": field 'model_type': unsupported architecture '" +
                           type + "' (supported: llama, qwen3, gemma3_text, gemma3)");
  OPENRL_ASSIGN_OR_RETURN(c.vocab_size, GetField<int64_t>(j, "vocab_size", src));
  OPENRL_ASSIGN_OR_RETURN(c.hidden_size, GetField<int64_t>(j, "hidden_size", src));
  OPENRL_ASSIGN_OR_RETURN(c.intermediate_size, GetField<int64_t>(j, "intermediate_size", src));
  OPENRL_ASSIGN_OR_RETURN(c.num_hidden_layers, GetField<int64_t>(j, "num_hidden_layers", src));
  OPENRL_ASSIGN_OR_RETURN(c.num_attention_heads, GetField<int64_t>(j, "num_attention_heads", src));
  OPENRL_ASSIGN_OR_RETURN(c.num_key_value_heads,
                          GetFieldOr<int64_t>(j, "num_key_value_heads", c.num_attention_heads, src));
  for (auto [v, name] : {std::pair{c.vocab_size, "vocab_size"}, {c.hidden_size, "hidden_size"},
                         {c.intermediate_size, "intermediate_size"}})
    OPENRL_RETURN_IF_ERROR(RequirePositive(v, name, src));
  for (auto [v, name] : {std::pair{c.num_hidden_layers, "num_hidden_layers"},
                         {c.num_attention_heads, "num_attention_heads"},
                         {c.num_key_value_heads, "num_key_value_heads"}})
    OPENRL_RETURN_IF_ERROR(RequirePositive(v, name, src, kMaxCount));
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return InvalidArgument(std::string(src) + ": num_attention_heads (" +
                           std::to_string(c.num_attention_heads) +
                           ") must be a multiple of num_key_value_heads (" +
                           std::to_string(c.num_key_value_heads) + ")");
  int64_t default_head_dim = c.hidden_size / c.num_attention_heads;
  OPENRL_ASSIGN_OR_RETURN(c.head_dim, GetFieldOr<int64_t>(j, "head_dim", default_head_dim, src));
  OPENRL_RETURN_IF_ERROR(RequirePositive(c.head_dim, "head_dim", src, kMaxCount * 4));
  if (c.head_dim % 2 != 0) return InvalidArgument(std::string(src) + ": head_dim must be even");
  OPENRL_ASSIGN_OR_RETURN(c.max_position_embeddings,
                          GetFieldOr<int64_t>(j, "max_position_embeddings", 2048, src));
  OPENRL_RETURN_IF_ERROR(RequirePositive(c.max_position_embeddings, "max_position_embeddings", src));
  OPENRL_ASSIGN_OR_RETURN(c.rms_norm_eps, GetFieldOr<double>(j, "rms_norm_eps", 1e-6, src));
  bool tie_default = c.gemma();
  OPENRL_ASSIGN_OR_RETURN(c.tie_word_embeddings,
                          GetFieldOr<bool>(root, "tie_word_embeddings", tie_default, src));
  if (jp != &root && j.contains("tie_word_embeddings")) {
    OPENRL_ASSIGN_OR_RETURN(c.tie_word_embeddings, GetField<bool>(j, "tie_word_embeddings", src));
  }
  OPENRL_ASSIGN_OR_RETURN(c.attention_bias, GetFieldOr<bool>(j, "attention_bias", false, src));
  OPENRL_ASSIGN_OR_RETURN(c.mlp_bias, GetFieldOr<bool>(j, "mlp_bias", false, src));
  std::string act = c.gemma() ? "gelu_pytorch_tanh" : "silu";
  OPENRL_ASSIGN_OR_RETURN(act, GetFieldOr<std::string>(j, "hidden_act", act, src));
  if (c.gemma()) {
    OPENRL_ASSIGN_OR_RETURN(act, GetFieldOr<std::string>(j, "hidden_activation", act, src));
  }
  if (act != "silu" && act != "gelu_pytorch_tanh" && act != "gelu")
    return InvalidArgument(std::string(src) + ": unsupported hidden_act '" + act + "'");
  c.hidden_act = act;
  OPENRL_RETURN_IF_ERROR(ParseRopeAll(j, c, src));
  if (c.gemma()) {
    OPENRL_ASSIGN_OR_RETURN(c.query_pre_attn_scalar,
                            GetFieldOr<double>(j, "query_pre_attn_scalar", c.head_dim, src));
    if (j.contains("final_logit_softcapping") && !j["final_logit_softcapping"].is_null()) {
      OPENRL_ASSIGN_OR_RETURN(c.final_logit_softcapping, GetField<double>(j, "final_logit_softcapping", src));
    }
    if (j.contains("attn_logit_softcapping") && !j["attn_logit_softcapping"].is_null()) {
      OPENRL_ASSIGN_OR_RETURN(c.attn_logit_softcapping, GetField<double>(j, "attn_logit_softcapping", src));
    }
  }
  OPENRL_RETURN_IF_ERROR(ParseGemmaLayers(j, c, src));
  std::string dtype = root.value("torch_dtype", root.value("dtype", std::string("float32")));
  if (dtype.empty() || (dtype != "float32" && dtype != "bfloat16" && dtype != "float16")) dtype = "float32";
  c.torch_dtype = dtype;
  auto read_id = [&](const char* name) -> std::optional<int64_t> {
    const Json& src_obj = j.contains(name) ? j : root;
    if (src_obj.contains(name) && src_obj[name].is_number_integer()) return src_obj[name].get<int64_t>();
    return std::nullopt;
  };
  c.bos_token_id = read_id("bos_token_id");
  c.pad_token_id = read_id("pad_token_id");
  const Json& eos_src = j.contains("eos_token_id") ? j : root;
  if (eos_src.contains("eos_token_id")) c.eos_token_ids = EosTokenIds(eos_src["eos_token_id"]);
  return c;
}

Result<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  OPENRL_ASSIGN_OR_RETURN(Json j, ReadJsonFile(path));
  return FromJson(j, path);
}

Json ModelConfig::ToJson() const {
  Json j;
  j["architectures"] = {family == Family::kLlama   ? "LlamaForCausalLM"
                        : family == Family::kQwen3 ? "Qwen3ForCausalLM"
                                                   : "Gemma3ForCausalLM"};
  j["model_type"] = FamilyName(family);
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["attention_bias"] = attention_bias;
  j[gemma() ? "hidden_activation" : "hidden_act"] = hidden_act;
  if (family == Family::kLlama) j["mlp_bias"] = mlp_bias;
  if (gemma()) {
    j["rope_parameters"] = {{"full_attention", RopeToJson(rope)},
                            {"sliding_attention", RopeToJson(rope_local)}};
    // transformers types this field as an int; write whole values as integers.
    if (query_pre_attn_scalar == std::floor(query_pre_attn_scalar))
      j["query_pre_attn_scalar"] = static_cast<int64_t>(query_pre_attn_scalar);
    else
      j["query_pre_attn_scalar"] = query_pre_attn_scalar;
    j["final_logit_softcapping"] = final_logit_softcapping ? Json(*final_logit_softcapping) : Json();
    j["attn_logit_softcapping"] = attn_logit_softcapping ? Json(*attn_logit_softcapping) : Json();
  } else {
    j["rope_parameters"] = RopeToJson(rope);
  }
  if (gemma() || sliding_window) {
    Json types = Json::array();
    for (bool s : layer_is_sliding) types.push_back(s ? "sliding_attention" : "full_attention");
    j["layer_types"] = types;
    j["sliding_window"] = sliding_window ? Json(*sliding_window) : Json();
  }
  if (family == Family::kQwen3) j["use_sliding_window"] = sliding_window.has_value();
  j["dtype"] = torch_dtype;
  j["bos_token_id"] = bos_token_id ? Json(*bos_token_id) : Json();
  j["pad_token_id"] = pad_token_id ? Json(*pad_token_id) : Json();
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  else j["eos_token_id"] = nullptr;
  return j;
}

}  // namespace openrl::model
