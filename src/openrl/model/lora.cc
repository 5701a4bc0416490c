#include "openrl/model/lora.h"

#include <ATen/CPUGeneratorImpl.h>
#include <cmath>

namespace openrl::model {

std::string_view LinearName(LinearKind k) {
  switch (k) {
    case LinearKind::kQ: return "q_proj";
    case LinearKind::kK: return "k_proj";
    case LinearKind::kV: return "v_proj";
    case LinearKind::kO: return "o_proj";
    case LinearKind::kGate: return "gate_proj";
    case LinearKind::kUp: return "up_proj";
    case LinearKind::kDown: return "down_proj";
    case LinearKind::kLmHead: return "lm_head";
  }
  return "?";
}

std::optional<LinearKind> LinearFromName(std::string_view name) {
  for (auto k : {LinearKind::kQ, LinearKind::kK, LinearKind::kV, LinearKind::kO, LinearKind::kGate,
                 LinearKind::kUp, LinearKind::kDown, LinearKind::kLmHead})
    if (LinearName(k) == name) return k;
  return std::nullopt;
}

double LoraConfig::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

Status LoraConfig::Validate() const {
  if (rank <= 0) return InvalidArgument("lora: rank must be positive, got " + std::to_string(rank));
  if (!(alpha > 0)) return InvalidArgument("lora: alpha must be positive");
  if (dropout < 0 || dropout >= 1) return InvalidArgument("lora: dropout must be in [0, 1)");
  if (targets.empty()) return InvalidArgument("lora: target_modules is empty");
  return Status::Ok();
}

namespace {

std::pair<int64_t, int64_t> InOut(const ModelConfig& m, LinearKind k) {
  int64_t h = m.hidden_size, q = m.num_attention_heads * m.head_dim,
          kv = m.num_key_value_heads * m.head_dim, ff = m.intermediate_size;
  switch (k) {
    case LinearKind::kQ: return {h, q};
    case LinearKind::kK:
    case LinearKind::kV: return {h, kv};
    case LinearKind::kO: return {q, h};
    case LinearKind::kGate:
    case LinearKind::kUp: return {h, ff};
    case LinearKind::kDown: return {ff, h};
    case LinearKind::kLmHead: return {h, m.vocab_size};
  }
  return {0, 0};
}

}  // namespace

std::unique_ptr<LoraAdapter> LoraAdapter::Create(const ModelConfig& model, const LoraConfig& cfg,
                                                 at::ScalarType dtype, at::Device device,
                                                 uint64_t seed) {
  auto adapter = std::make_unique<LoraAdapter>(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto opts = at::TensorOptions().dtype(at::kFloat);
  for (int64_t layer = -1; layer < model.num_hidden_layers; ++layer) {
    for (LinearKind k : cfg.targets) {
      if ((k == LinearKind::kLmHead) != (layer == -1)) continue;
      auto [in, out] = InOut(model, k);
      // PEFT: kaiming_uniform_(A, a=sqrt(5)) → U(-1/sqrt(in), 1/sqrt(in)); B zeros.
      double bound = 1.0 / std::sqrt(static_cast<double>(in));
      at::Tensor a = at::empty({cfg.rank, in}, opts);
      a.uniform_(-bound, bound, gen);
      at::Tensor b = at::zeros({out, cfg.rank}, opts);
      adapter->Set(layer, k, {a.to(device, dtype), b.to(device, dtype)});
    }
  }
  return adapter;
}

const LoraAdapter::Pair* LoraAdapter::Find(int64_t layer, LinearKind kind) const {
  auto it = pairs_.find({layer, kind});
  return it == pairs_.end() ? nullptr : &it->second;
}
LoraAdapter::Pair* LoraAdapter::Find(int64_t layer, LinearKind kind) {
  auto it = pairs_.find({layer, kind});
  return it == pairs_.end() ? nullptr : &it->second;
}
void LoraAdapter::Set(int64_t layer, LinearKind kind, Pair p) { pairs_[{layer, kind}] = std::move(p); }

std::vector<at::Tensor> LoraAdapter::Parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& [key, p] : pairs_) {
    out.push_back(p.a);
    out.push_back(p.b);
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> LoraAdapter::NamedTensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [key, p] : pairs_) {
    auto [layer, kind] = key;
    std::string base;
    if (kind == LinearKind::kLmHead) {
      base = "base_model.model.lm_head";
    } else {
      bool attn = kind == LinearKind::kQ || kind == LinearKind::kK || kind == LinearKind::kV ||
                  kind == LinearKind::kO;
      base = "base_model.model.model.layers." + std::to_string(layer) +
             (attn ? ".self_attn." : ".mlp.") + std::string(LinearName(kind));
    }
    out.emplace_back(base + ".lora_A.weight", p.a);
    out.emplace_back(base + ".lora_B.weight", p.b);
  }
  return out;
}

void LoraAdapter::SetRequiresGrad(bool on) {
  for (auto& [key, p] : pairs_) {
    p.a.requires_grad_(on);
    p.b.requires_grad_(on);
  }
}

at::Tensor ApplyLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       const LoraBatch* lora, int64_t layer, LinearKind kind) {
  at::Tensor y = bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
  return AddLora(std::move(y), x, lora, layer, kind);
}

at::Tensor AddLora(at::Tensor y, const at::Tensor& x, const LoraBatch* lora, int64_t layer, LinearKind kind) {
  if (lora == nullptr) return y;
  for (const auto& g : lora->groups) {
    const LoraAdapter::Pair* p = g.adapter ? g.adapter->Find(layer, kind) : nullptr;
    if (p == nullptr) continue;
    const LoraConfig& cfg = g.adapter->config();
    at::Tensor xs = g.rows.defined() ? x.index_select(0, g.rows) : x;
    if (lora->training && cfg.dropout > 0) xs = at::dropout(xs, cfg.dropout, /*train=*/true);
    // Adapters may be kept in fp32 over a bf16/fp16 base (as PEFT does): compute in the
    // adapter's dtype, add in the base's.
    if (xs.scalar_type() != p->a.scalar_type()) xs = xs.to(p->a.scalar_type());
    at::Tensor delta = at::linear(at::linear(xs, p->a), p->b) * cfg.scale();  // (b, T, out)
    if (delta.scalar_type() != y.scalar_type()) delta = delta.to(y.scalar_type());
    y = g.rows.defined() ? y.index_add(0, g.rows, delta) : y + delta;
  }
  return y;
}

}  // namespace openrl::model
