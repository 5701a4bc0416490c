// Tiny random models and adapters for the model and engine unit tests (header-only, tests only).
#pragma once
#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <functional>
#include <memory>
#include <string>

#include "openrl/model/config.h"
#include "openrl/model/lora.h"

namespace openrl::model::testing {

// Two layers, GQA 4/2, vocabulary 97; Gemma 3 with a sliding and a global layer.
inline ModelConfig TinyConfig(Family family) {
  ModelConfig c;
  c.family = family;
  c.model_type = std::string(FamilyName(family));
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 128;
  if (family == Family::kGemma3) {
    c.sliding_window = 4;
    c.layer_is_sliding = {true, false};
    c.query_pre_attn_scalar = 8;
  }
  return c;
}

// An adapter that changes the outputs: PEFT's initialisation, then B drawn (seeded) instead of zeros.
inline std::unique_ptr<LoraAdapter> RandomAdapter(const ModelConfig& c, uint64_t seed, LoraConfig lc = {4, 8}) {
  auto a = LoraAdapter::Create(c, lc, at::kFloat, at::kCPU, seed);
  at::manual_seed(seed);
  for (auto& [name, t] : a->NamedTensors())
    if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.3);
  return a;
}

// The ATen ops (FUNCTION scope, nested ones included) that fn issues on this thread.
inline int64_t CountOps(const std::function<void()>& fn) {
  static thread_local int64_t count = 0;
  count = 0;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback([](const at::RecordFunction&) -> std::unique_ptr<at::ObserverContext> {
        ++count;
        return nullptr;
      }).scopes({at::RecordScope::FUNCTION}));
  fn();
  at::removeCallback(handle);
  return count;
}

}  // namespace openrl::model::testing
