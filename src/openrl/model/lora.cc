#include "openrl/model/lora.h"

#include <ATen/CPUGeneratorImpl.h>
#include <algorithm>
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

at::Tensor AddLoraGroup(at::Tensor y, const at::Tensor& x, const LoraBatch* lora, int64_t layer,
                        std::initializer_list<LinearKind> kinds, std::initializer_list<int64_t> widths) {
  if (lora == nullptr) return y;
  bool dropout = false;
  for (const auto& g : lora->groups) dropout = dropout || (lora->training && g.adapter && g.adapter->config().dropout > 0);
  if (dropout) {
    // PEFT draws one dropout mask per projection (and adapter): the per-projection path, in its order.
    std::vector<at::Tensor> parts = y.split_with_sizes(std::vector<int64_t>(widths), -1);
    size_t i = 0;
    for (LinearKind k : kinds) parts[i] = AddLora(parts[i], x, lora, layer, k), ++i;
    return parts.size() == 1 ? parts[0] : at::cat(parts, -1);
  }
  for (const auto& g : lora->groups) {
    if (!g.adapter) continue;
    // One cast, one A matmul for the projections that read x, the scale on the rank-sized
    // intermediate, and one B matmul through the block-diagonal of their B's (projections
    // without an adapter contribute a zero block).
    std::vector<at::Tensor> as, bs;
    const LoraAdapter::Pair* any = nullptr;
    for (LinearKind k : kinds) {
      if (const LoraAdapter::Pair* p = g.adapter->Find(layer, k)) {
        as.push_back(p->a);
        bs.push_back(p->b);
        any = p;
      } else {
        bs.push_back(at::Tensor());
      }
    }
    if (any == nullptr) continue;
    auto w = widths.begin();
    for (at::Tensor& b : bs) {
      if (!b.defined()) b = at::zeros({*w, 0}, any->b.options());
      ++w;
    }
    at::Tensor xs = g.rows.defined() ? x.index_select(0, g.rows) : x;
    if (xs.scalar_type() != any->a.scalar_type()) xs = xs.to(any->a.scalar_type());
    at::Tensor a = as.size() == 1 ? as[0] : at::cat(as, 0);
    at::Tensor b = bs.size() == 1 ? bs[0] : at::block_diag(bs);
    at::Tensor delta = at::linear(at::linear(xs, a) * g.adapter->config().scale(), b);
    if (delta.scalar_type() != y.scalar_type()) delta = delta.to(y.scalar_type());
    y = g.rows.defined() ? y.index_add(0, g.rows, delta) : y + delta;
  }
  return y;
}

LoraStack::LoraStack(std::vector<const LoraAdapter*> adapters, const std::vector<int64_t>& row_slots,
                     at::Device device)
    : adapters_(std::move(adapters)), device_(device) {
  SetRows(row_slots);
}

void LoraStack::SetRows(const std::vector<int64_t>& row_slots) {
  const int64_t S = static_cast<int64_t>(adapters_.size()), B = static_cast<int64_t>(row_slots.size());
  bool base_rows = std::any_of(row_slots.begin(), row_slots.end(), [](int64_t s) { return s < 0; });
  single_ = S == 1 && !base_rows;
  // Built on the host, one copy to the device.
  at::Tensor onehot = at::zeros({B, S}, at::kFloat), slots = at::zeros({B}, at::kLong),
             used = at::zeros({B, 1, 1}, at::kFloat);
  auto oh = onehot.accessor<float, 2>();
  auto sl = slots.accessor<int64_t, 1>();
  auto us = used.accessor<float, 3>();
  for (int64_t b = 0; b < B; ++b) {
    if (row_slots[b] < 0) continue;
    oh[b][row_slots[b]] = 1.0f;
    sl[b] = row_slots[b];
    us[b][0][0] = 1.0f;
  }
  onehot_ = onehot.to(device_);
  slots_ = slots.to(device_);
  row_used_ = base_rows ? used.to(device_) : at::Tensor();
}

std::vector<int64_t> LoraStack::Key(int64_t layer, std::initializer_list<LinearKind> kinds) const {
  std::vector<int64_t> key;
  for (const LoraAdapter* a : adapters_)
    for (LinearKind k : kinds) {
      const LoraAdapter::Pair* p = a->Find(layer, k);
      if (p == nullptr) {
        key.push_back(0);
        continue;
      }
      for (const at::Tensor* t : {&p->a, &p->b}) {
        key.push_back(reinterpret_cast<int64_t>(t->data_ptr()));
        key.push_back(t->_version());
      }
    }
  return key;
}

at::Tensor LoraStack::Apply(const at::Tensor& y, const at::Tensor& x, int64_t layer,
                            std::initializer_list<LinearKind> kinds, std::initializer_list<int64_t> widths) const {
  Entry& e = entries_[{layer, *kinds.begin()}];
  std::vector<int64_t> key = Key(layer, kinds);
  const int64_t S = static_cast<int64_t>(adapters_.size());
  if (e.key != key || !e.a_cat.defined()) {
    int64_t in = x.size(-1), out = 0, R = 0;
    for (int64_t w : widths) out += w;
    for (const LoraAdapter* a : adapters_) {
      int64_t r = 0;
      for (LinearKind k : kinds)
        if (const LoraAdapter::Pair* p = a->Find(layer, k)) r += p->a.size(0);
      R = std::max(R, r);
    }
    auto opts = at::TensorOptions().dtype(at::kFloat).device(device_);
    e.rank = R;
    R = std::max<int64_t>(R, 1);
    // Slot s owns columns [s·R, (s+1)·R) of a_cat and the same rows of b_cat; ranks below R are
    // zero-padded.
    e.a_cat = at::zeros({in, S * R}, opts);
    e.b_cat = at::zeros({S * R, out}, opts);
    for (int64_t s = 0; s < S; ++s) {
      int64_t roff = s * R, ooff = 0;
      auto w = widths.begin();
      for (LinearKind k : kinds) {
        if (const LoraAdapter::Pair* p = adapters_[s]->Find(layer, k)) {
          int64_t r = p->a.size(0);
          e.a_cat.narrow(1, roff, r).copy_(p->a.t());
          e.b_cat.narrow(0, roff, r).narrow(1, ooff, *w).copy_(p->b.t() * adapters_[s]->config().scale());
          roff += r;
        }
        ooff += *w++;
      }
    }
    e.key = std::move(key);
  }
  if (e.rank == 0) return y;
  at::Tensor xs = x.scalar_type() == at::kFloat ? x : x.to(at::kFloat);
  const int64_t B = x.size(0), T = x.size(1), R = e.a_cat.size(1) / S;
  at::Tensor d;
  if (single_) {
    d = at::matmul(at::matmul(xs, e.a_cat), e.b_cat);
  } else if (S <= kOneHotMaxSlots) {
    // Every row through every adapter's A (one GEMM), the other adapters' ranks zeroed by the
    // row's one-hot slot, then one GEMM through all the B's: no per-row copy of any weight.
    at::Tensor z = at::matmul(xs, e.a_cat).view({B, T, S, R}) * onehot_.view({B, 1, S, 1});
    d = at::matmul(z.view({B, T, S * R}), e.b_cat);
  } else {
    // Many adapters: each row's own A and B gathered (a copy per row, but FLOPs of one adapter).
    at::Tensor a = e.a_cat.view({-1, S, R}).permute({1, 0, 2}).index_select(0, slots_);
    at::Tensor b = e.b_cat.view({S, R, -1}).index_select(0, slots_);
    d = at::matmul(at::matmul(xs, a), b);
    if (row_used_.defined()) d = d * row_used_;
  }
  return y + d.to(y.scalar_type());
}

}  // namespace openrl::model
