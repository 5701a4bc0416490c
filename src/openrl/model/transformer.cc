#include "openrl/model/transformer.h"

#include "openrl/model/attention.h"

#include <ATen/CPUGeneratorImpl.h>
#include <algorithm>
#include <cmath>
#include <numbers>
#include <set>

#include <c10/core/GradMode.h>

#include "openrl/model/activation_checkpoint.h"
#include "openrl/model/attention.h"
#include "openrl/model/fused_head.h"

namespace openrl::model {
namespace {

// Inverse RoPE frequencies (hd/2), following each rope_type's definition in fp32.
at::Tensor InvFreq(const RopeParams& r, int64_t head_dim) {
  auto idx = at::arange(0, head_dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(head_dim);
  at::Tensor inv = 1.0 / at::pow(at::scalar_tensor(r.theta, at::kFloat), idx);
  if (r.type == "linear") return inv / r.factor;
  if (r.type != "llama3") return inv;
  double old_len = static_cast<double>(r.original_max_position_embeddings);
  double low_wavelen = old_len / r.low_freq_factor, high_wavelen = old_len / r.high_freq_factor;
  at::Tensor wavelen = 2 * std::numbers::pi / inv;
  at::Tensor scaled = at::where(wavelen > low_wavelen, inv / r.factor, inv);
  at::Tensor smooth = (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
  at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return at::where(medium, smoothed, scaled);
}

// x (..., in) · w (in, out) as one 2-D GEMM. at::matmul would run a non-contiguous 3-D x (the
// last position of a prefill, a narrow) as a batched GEMM against an expanded, copied w: for the
// head of a 16-row prefill that was a 268 MB copy per request.
at::Tensor Project(const at::Tensor& x, const at::Tensor& w) {
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = w.size(1);
  return at::mm(x.reshape({-1, x.size(-1)}), w).view(sizes);
}

// A decode step's input: (B, 1, in) with up to kPackedDecodeRows rows. A frozen layer (a base
// under LoRA, for training and serving) runs every projection through PackedLinear, under autograd
// too (PackedLinear::ApplyFrozen), so a forward without grad (Tinker's `forward`,
// `compute_logprobs`) multiplies exactly as the same forward under autograd and gives the same
// values. A layer being trained runs its forwards under autograd with MKL, so its forwards without
// grad do too, except decode steps (sampling; nothing compares them with a forward under grad). On
// 2 cores the kernels ran at 1.75-2.9x MKL from 16 to 128 rows (bench/RESULTS.md, 2026-12-07).
constexpr int64_t kPackedDecodeRows = 128;
bool DecodeStep(const at::Tensor& x) {
  return x.dim() == 3 && x.size(1) == 1 && x.size(0) <= kPackedDecodeRows;
}

at::Tensor RotateHalf(const at::Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

// ---- KV cache --------------------------------------------------------------------------------

namespace {
// The cache keeps a bf16/fp16 model's keys and values in fp32 on CPU (see KvCache).
at::ScalarType CacheDtype(at::ScalarType dtype, at::Device device) {
  bool reduced = dtype == at::kBFloat16 || dtype == at::kHalf;
  return device.is_cpu() && reduced ? at::kFloat : dtype;
}
}  // namespace

KvCache::KvCache(const ModelConfig& cfg, int64_t batch, int64_t capacity, at::ScalarType dtype,
                 at::Device device)
    : batch_(batch), capacity_(capacity) {
  dtype_ = CacheDtype(dtype, device);
  auto opts = at::TensorOptions().dtype(dtype_).device(device);
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    k_.push_back(at::zeros({batch, cfg.num_key_value_heads, capacity, cfg.head_dim}, opts));
    v_.push_back(at::zeros({batch, cfg.num_key_value_heads, capacity, cfg.head_dim}, opts));
  }
  valid_ = at::zeros({batch, capacity}, at::TensorOptions().dtype(at::kBool).device(device));
}

int64_t KvCache::BytesPerToken(const ModelConfig& cfg, at::ScalarType dtype, at::Device device) {
  int64_t item = static_cast<int64_t>(c10::elementSize(CacheDtype(dtype, device)));
  return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * item;
}

void KvCache::SelectRows(const at::Tensor& rows) {
  for (auto& t : k_) t = t.index_select(0, rows);
  for (auto& t : v_) t = t.index_select(0, rows);
  valid_ = valid_.index_select(0, rows);
  batch_ = rows.size(0);
}

void KvCache::Join(const KvCache& other, int64_t capacity) {
  int64_t length = std::max(length_, other.length_);
  int64_t cap = std::max(capacity, length);
  int64_t batch = batch_ + other.batch_;
  auto place = [&](const at::Tensor& mine, const at::Tensor& theirs) {
    std::vector<int64_t> shape = mine.sizes().vec();
    shape[0] = batch;
    int64_t slot_dim = mine.dim() == 2 ? 1 : 2;
    shape[slot_dim] = cap;
    at::Tensor out = at::zeros(shape, mine.options());
    out.narrow(0, 0, batch_).narrow(slot_dim, length - length_, length_).copy_(mine.narrow(slot_dim, 0, length_));
    out.narrow(0, batch_, other.batch_)
        .narrow(slot_dim, length - other.length_, other.length_)
        .copy_(theirs.narrow(slot_dim, 0, other.length_));
    return out;
  };
  for (size_t i = 0; i < k_.size(); ++i) {
    k_[i] = place(k_[i], other.k_[i]);
    v_[i] = place(v_[i], other.v_[i]);
  }
  valid_ = place(valid_, other.valid_);
  batch_ = batch;
  capacity_ = cap;
  length_ = length;
}

void KvCache::DropLeading(int64_t n) {
  if (n <= 0) return;
  n = std::min(n, length_);
  auto shift = [&](at::Tensor& t, int64_t slot_dim) {
    at::Tensor out = at::zeros_like(t);
    out.narrow(slot_dim, 0, length_ - n).copy_(t.narrow(slot_dim, n, length_ - n));
    t = out;
  };
  for (auto& t : k_) shift(t, 2);
  for (auto& t : v_) shift(t, 2);
  shift(valid_, 1);
  length_ -= n;
}

// ---- construction ----------------------------------------------------------------------------

Transformer::Transformer(ModelConfig cfg, at::ScalarType dtype, at::Device device)
    : cfg_(std::move(cfg)), dtype_(dtype), device_(device) {
  layers_.resize(cfg_.num_hidden_layers);
  inference_.resize(cfg_.num_hidden_layers);
  ComputeRopeTables();
  const int64_t h = cfg_.hidden_size, q = cfg_.num_attention_heads * cfg_.head_dim,
                kv = cfg_.num_key_value_heads * cfg_.head_dim, ff = cfg_.intermediate_size;
  auto opts = at::TensorOptions().dtype(dtype_).device(device_);
  for (auto& L : layers_) {
    L.qkv_w = at::empty({q + 2 * kv, h}, opts);
    L.q = L.qkv_w.narrow(0, 0, q);
    L.k = L.qkv_w.narrow(0, q, kv);
    L.v = L.qkv_w.narrow(0, q + kv, kv);
    L.gate_up_w = at::empty({2 * ff, h}, opts);
    L.gate = L.gate_up_w.narrow(0, 0, ff);
    L.up = L.gate_up_w.narrow(0, ff, ff);
  }
}

void Transformer::Fill(at::Tensor& slot, const at::Tensor& t) const {
  if (slot.defined()) {
    slot.copy_(t);
  } else {
    slot = t.to(device_, dtype_).contiguous();
  }
}

at::Tensor Transformer::Fused(const at::Tensor& w, std::initializer_list<const at::Tensor*> parts) {
  if (parts.size() == 1) return **parts.begin();
  int64_t row = 0;
  const int64_t row_bytes = w.defined() ? w.size(1) * w.element_size() : 0;
  bool views = w.defined() && w.is_contiguous();
  for (const at::Tensor* t : parts) {
    views = views && t->is_contiguous() && t->size(1) == w.size(1) && t->scalar_type() == w.scalar_type() &&
            t->data_ptr() == static_cast<const char*>(w.data_ptr()) + row * row_bytes;
    row += t->size(0);
  }
  if (views && row == w.size(0)) return w;
  std::vector<at::Tensor> ts;
  for (const at::Tensor* t : parts) ts.push_back(*t);
  return at::cat(ts, 0);
}

void Transformer::ComputeRopeTables() {
  inv_freq_global_ = InvFreq(cfg_.rope, cfg_.head_dim).to(device_);
  inv_freq_local_ = InvFreq(cfg_.rope_local, cfg_.head_dim).to(device_);
}

std::vector<std::pair<std::string, at::Tensor*>> Transformer::Slots() {
  std::vector<std::pair<std::string, at::Tensor*>> s;
  s.emplace_back("model.embed_tokens.weight", &embed_);
  for (int64_t i = 0; i < cfg_.num_hidden_layers; ++i) {
    std::string p = "model.layers." + std::to_string(i) + ".";
    auto& L = layers_[i];
    s.emplace_back(p + "self_attn.q_proj.weight", &L.q);
    s.emplace_back(p + "self_attn.k_proj.weight", &L.k);
    s.emplace_back(p + "self_attn.v_proj.weight", &L.v);
    s.emplace_back(p + "self_attn.o_proj.weight", &L.o);
    if (cfg_.attention_bias) {
      s.emplace_back(p + "self_attn.q_proj.bias", &L.q_bias);
      s.emplace_back(p + "self_attn.k_proj.bias", &L.k_bias);
      s.emplace_back(p + "self_attn.v_proj.bias", &L.v_bias);
      s.emplace_back(p + "self_attn.o_proj.bias", &L.o_bias);
    }
    if (cfg_.has_qk_norm()) {
      s.emplace_back(p + "self_attn.q_norm.weight", &L.q_norm);
      s.emplace_back(p + "self_attn.k_norm.weight", &L.k_norm);
    }
    s.emplace_back(p + "mlp.gate_proj.weight", &L.gate);
    s.emplace_back(p + "mlp.up_proj.weight", &L.up);
    s.emplace_back(p + "mlp.down_proj.weight", &L.down);
    s.emplace_back(p + "input_layernorm.weight", &L.input_norm);
    s.emplace_back(p + "post_attention_layernorm.weight", &L.post_attn_norm);
    if (cfg_.gemma()) {
      s.emplace_back(p + "pre_feedforward_layernorm.weight", &L.pre_ff_norm);
      s.emplace_back(p + "post_feedforward_layernorm.weight", &L.post_ff_norm);
    }
  }
  s.emplace_back("model.norm.weight", &final_norm_);
  if (!cfg_.tie_word_embeddings) s.emplace_back("lm_head.weight", &lm_head_);
  return s;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Transformer::ExpectedTensors() const {
  const auto& c = cfg_;
  int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
          kv = c.num_key_value_heads * c.head_dim, ff = c.intermediate_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  auto self = const_cast<Transformer*>(this);
  for (auto& [name, slot] : self->Slots()) {
    std::vector<int64_t> shape;
    auto ends = [&](const char* suffix) { return name.ends_with(suffix); };
    if (name == "model.embed_tokens.weight" || name == "lm_head.weight") shape = {c.vocab_size, h};
    else if (ends("q_proj.weight")) shape = {q, h};
    else if (ends("k_proj.weight") || ends("v_proj.weight")) shape = {kv, h};
    else if (ends("o_proj.weight")) shape = {h, q};
    else if (ends("q_proj.bias")) shape = {q};
    else if (ends("k_proj.bias") || ends("v_proj.bias")) shape = {kv};
    else if (ends("o_proj.bias")) shape = {h};
    else if (ends("q_norm.weight") || ends("k_norm.weight")) shape = {c.head_dim};
    else if (ends("gate_proj.weight") || ends("up_proj.weight")) shape = {ff, h};
    else if (ends("down_proj.weight")) shape = {h, ff};
    else shape = {h};
    out.emplace_back(name, shape);
  }
  return out;
}

Result<std::unique_ptr<Transformer>> Transformer::Load(const ModelConfig& cfg,
                                                       const TensorSource& source,
                                                       at::ScalarType dtype, at::Device device) {
  std::unique_ptr<Transformer> m(new Transformer(cfg, dtype, device));
  auto expected = m->ExpectedTensors();
  auto slots = m->Slots();
  for (size_t i = 0; i < slots.size(); ++i) {
    const auto& [name, shape] = expected[i];
    OPENRL_ASSIGN_OR_RETURN(at::Tensor t, source(name));
    if (t.sizes() != at::IntArrayRef(shape)) {
      std::string got = "[", want = "[";
      for (auto d : t.sizes()) got += std::to_string(d) + ",";
      for (auto d : shape) want += std::to_string(d) + ",";
      got.back() = ']';
      want.back() = ']';
      return InvalidArgument("tensor '" + name + "' has shape " + got + " but config.json implies " + want);
    }
    if (!at::isFloatingType(t.scalar_type()))
      return InvalidArgument("tensor '" + name + "' has non-floating dtype " +
                             std::string(c10::toString(t.scalar_type())));
    m->Fill(*slots[i].second, t);
  }
  return m;
}

std::unique_ptr<Transformer> Transformer::Init(const ModelConfig& cfg, at::ScalarType dtype,
                                               at::Device device, uint64_t seed) {
  std::unique_ptr<Transformer> m(new Transformer(cfg, dtype, device));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto expected = m->ExpectedTensors();
  auto slots = m->Slots();
  for (size_t i = 0; i < slots.size(); ++i) {
    const auto& [name, shape] = expected[i];
    at::Tensor t;
    if (name.ends_with("norm.weight") || name.ends_with("layernorm.weight")) {
      // Gemma's norms multiply by (1 + w): identity at 0. Llama/Qwen multiply by w: identity at 1.
      t = cfg.gemma() ? at::zeros(shape) : at::ones(shape);
    } else if (name.ends_with(".bias")) {
      t = at::zeros(shape);
    } else {
      t = at::empty(shape);
      t.normal_(0.0, 0.02, gen);
    }
    m->Fill(*slots[i].second, t);
  }
  return m;
}

std::vector<std::pair<std::string, at::Tensor>> Transformer::NamedParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& [name, slot] : const_cast<Transformer*>(this)->Slots()) out.emplace_back(name, *slot);
  return out;
}

Transformer::WeightMemory Transformer::WeightBytes() const {
  WeightMemory m;
  std::set<const void*> seen;  // storages: views of one storage count once
  auto count = [&](const at::Tensor& t, int64_t& into) {
    if (!t.defined() || !seen.insert(t.storage().unsafeGetStorageImpl()).second) return;
    into += static_cast<int64_t>(t.storage().nbytes());
  };
  for (auto& [name, slot] : const_cast<Transformer*>(this)->Slots()) count(*slot, m.parameters);
  std::lock_guard<std::mutex> lock(inference_mu_);
  for (const InferenceWeights& iw : inference_)
    for (const Projection* p : {&iw.qkv, &iw.gate_up, &iw.o, &iw.down}) {
      count(p->t, m.copies);
      if (p->packed != nullptr) m.copies += p->packed->bytes();
    }
  count(head_t_, m.copies);
  if (head_packed_ != nullptr) m.copies += head_packed_->bytes();
  return m;
}

void Transformer::SetRequiresGrad(bool on) {
  for (auto& [name, slot] : Slots()) slot->requires_grad_(on);
}

Status Transformer::ForEachLinear(
    const std::function<void(int64_t layer, LinearKind kind, at::Tensor& w)>& fn) {
  for (int64_t i = 0; i < cfg_.num_hidden_layers; ++i) {
    auto& L = layers_[i];
    for (auto [k, w] : {std::pair{LinearKind::kQ, &L.q}, {LinearKind::kK, &L.k}, {LinearKind::kV, &L.v},
                        {LinearKind::kO, &L.o}, {LinearKind::kGate, &L.gate}, {LinearKind::kUp, &L.up},
                        {LinearKind::kDown, &L.down}})
      fn(i, k, *w);
  }
  fn(-1, LinearKind::kLmHead, cfg_.tie_word_embeddings ? embed_ : lm_head_);
  return Status::Ok();
}

// ---- inference weights ----

namespace {
// The fused inference path applies a batch's adapters through its LoraStack when it has one.
bool Stacked(const LoraBatch* lora, const at::Tensor& x) {
  return lora != nullptr && lora->stack != nullptr && !lora->training && x.dim() == 3;
}
}  // namespace

bool Transformer::Frozen(int64_t i) const {
  const auto& L = layers_[i];
  for (const at::Tensor* t : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
    if (t->requires_grad()) return false;
  return true;
}

const Transformer::InferenceWeights* Transformer::Inference(int64_t i, const at::Tensor& x) const {
  if (cfg_.attention_bias) return nullptr;
  const auto& L = layers_[i];
  // Under autograd only while the layer is frozen (LoRA training): gradients flow to the input
  // through the fused copies as they would through the separate weights.
  const bool frozen = Frozen(i);
  if (c10::GradMode::is_enabled() && !frozen) return nullptr;
  std::vector<int64_t> versions;
  for (const at::Tensor* t : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
    versions.push_back(t->_version());
    versions.push_back(reinterpret_cast<int64_t>(t->data_ptr()));
  }
  std::lock_guard<std::mutex> lock(inference_mu_);
  InferenceWeights& iw = inference_[i];
  if (iw.versions != versions) {
    iw = InferenceWeights{};
    iw.versions = std::move(versions);
  }
  const bool packed = Packs() && (frozen || DecodeStep(x));
  auto need = [&](Projection& p, const at::Tensor& storage, std::initializer_list<const at::Tensor*> parts) {
    if (p.t.defined() && (!packed || p.packed != nullptr)) return;
    at::Tensor w = Fused(storage, parts);
    if (!p.t.defined()) p.t = Transposed(w);  // a view when Packs(): no memory of its own
    if (packed && p.packed == nullptr) p.packed = std::make_shared<const PackedLinear>(w);
  };
  need(iw.qkv, L.qkv_w, {&L.q, &L.k, &L.v});
  need(iw.gate_up, L.gate_up_w, {&L.gate, &L.up});
  need(iw.o, L.o, {&L.o});
  need(iw.down, L.down, {&L.down});
  return &iw;
}

at::Tensor Transformer::Projection::operator()(const at::Tensor& x, bool frozen) const {
  if (packed != nullptr && (frozen || (!c10::GradMode::is_enabled() && DecodeStep(x))))
    return PackedLinear::ApplyFrozen(packed, t.t(), x);
  return Project(x, t);
}

at::Tensor Transformer::ProjectWithLora(const Projection& p, const at::Tensor& x, const LoraBatch* lora,
                                        int64_t layer, std::initializer_list<LinearKind> kinds,
                                        std::initializer_list<int64_t> widths) const {
  at::Tensor y = p(x, Frozen(layer));
  return Stacked(lora, x) ? lora->stack->Apply(y, x, layer, kinds, widths)
                          : AddLoraGroup(y, x, lora, layer, kinds, widths);
}

bool Transformer::Packs() const {
  return dtype_ == at::kFloat && device_.is_cpu() && PackedLinear::Available();
}

std::shared_ptr<const PackedLinear> Transformer::PackedHead(const at::Tensor& hidden) const {
  if (c10::GradMode::is_enabled() || !DecodeStep(hidden) || !Packs()) return nullptr;
  const at::Tensor& head = cfg_.tie_word_embeddings ? embed_ : lm_head_;
  std::lock_guard<std::mutex> lock(inference_mu_);
  const void* data = head.data_ptr();
  if (head_packed_version_ != head._version() || head_packed_data_ != data || head_packed_ == nullptr) {
    head_packed_ = std::make_shared<const PackedLinear>(head);
    head_packed_version_ = head._version();
    head_packed_data_ = data;
  }
  return head_packed_;
}

at::Tensor Transformer::Transposed(const at::Tensor& w) const {
  // A transposed view of the (out, in) weight, the layout `linear` uses, and no memory of its own.
  // In half precision a contiguous transposed copy would be worse, not only larger: on a CPU
  // without native fp16 it falls to a kernel 35–56× slower (AMD EPYC: 16×512·512×1024 took
  // 16.3 ms vs 0.47 ms) that also rounds differently from `linear`. In fp32 the layouts ran alike
  // (AMD EPYC, 2 threads, 6 shapes of 0.5–1.8M weights, 16–2048 rows: view/copy 0.80–1.21 with no
  // trend), and the few rows of a decode step go through PackedLinear anyway. Only an
  // fp32 CPU model without PackedLinear keeps a copy: there MKL's small-batch GEMMs repack a
  // viewed weight on every call (a Xeon: 245 vs 367 µs for a 16×512·512×1024 decode GEMM).
  if (dtype_ == at::kFloat && device_.is_cpu() && !Packs()) return w.t().contiguous();
  return w.contiguous().t();
}

at::Tensor Transformer::InferenceHead() const {
  const at::Tensor& head = cfg_.tie_word_embeddings ? embed_ : lm_head_;
  if (c10::GradMode::is_enabled() && head.requires_grad()) return {};
  std::lock_guard<std::mutex> lock(inference_mu_);
  if (head_version_ != head._version() || !head_t_.defined()) {
    head_t_ = Transposed(head);
    head_version_ = head._version();
  }
  return head_t_;
}

// ---- forward ---------------------------------------------------------------------------------

at::Tensor Transformer::RmsNorm(const at::Tensor& x, const at::Tensor& w) const {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + cfg_.rms_norm_eps);
  if (cfg_.gemma()) return (normed * (1.0 + w.to(at::kFloat))).to(x.scalar_type());
  return w * normed.to(x.scalar_type());
}

at::Tensor Transformer::Attention(int64_t i, const at::Tensor& x, const at::Tensor& cos,
                                  const at::Tensor& sin, const at::Tensor& mask,
                                  const ForwardArgs& args) const {
  const auto& L = layers_[i];
  const LoraBatch* lora = args.lora;
  int64_t B = x.size(0), T = x.size(1), hd = cfg_.head_dim;
  at::Tensor q, k, v;
  if (const InferenceWeights* iw = Inference(i, x)) {
    int64_t qd = cfg_.num_attention_heads * hd, kd = cfg_.num_key_value_heads * hd;
    at::Tensor qkv =
        ProjectWithLora(iw->qkv, x, lora, i, {LinearKind::kQ, LinearKind::kK, LinearKind::kV}, {qd, kd, kd});
    // One split (its backward is one cat), not three narrows (three zero-filled gradients).
    auto parts = qkv.split_with_sizes({qd, kd, kd}, -1);
    q = parts[0];
    k = parts[1];
    v = parts[2];
  } else {
    q = ApplyLinear(x, L.q, L.q_bias, lora, i, LinearKind::kQ);
    k = ApplyLinear(x, L.k, L.k_bias, lora, i, LinearKind::kK);
    v = ApplyLinear(x, L.v, L.v_bias, lora, i, LinearKind::kV);
  }
  // (B, T, n*hd) → (B, n, T, hd)
  q = q.reshape({B, T, -1, hd}).transpose(1, 2);
  k = k.reshape({B, T, -1, hd}).transpose(1, 2);
  v = v.reshape({B, T, -1, hd}).transpose(1, 2);
  if (cfg_.has_qk_norm()) {
    q = RmsNorm(q, L.q_norm);
    k = RmsNorm(k, L.k_norm);
  }
  q = q * cos + RotateHalf(q) * sin;
  k = k * cos + RotateHalf(k) * sin;
  if (args.cache != nullptr) {
    KvCache& c = *args.cache;
    int64_t start = c.length();
    c.keys(i).narrow(2, start, T).copy_(k);
    c.values(i).narrow(2, start, T).copy_(v);
    k = c.keys(i).narrow(2, 0, start + T);
    v = c.values(i).narrow(2, 0, start + T);
    if (c.dtype() != q.scalar_type()) {  // fp32 cache of a half-precision model on CPU
      // A decode step's single query row attends in fp32 (the fast kernel there); a prefill
      // attends in the model's dtype, as the reference does (the cached values are exactly the
      // half-precision ones, so casting them back loses nothing).
      if (T == 1) {
        q = q.to(c.dtype());
      } else {
        k = k.to(q.scalar_type());
        v = v.to(q.scalar_type());
      }
    }
  }
  at::Tensor out;
  double scale = cfg_.attention_scale();
  if (cfg_.attn_logit_softcapping) {
    // Soft-capped scores are outside SDPA: explicit softmax(cap·tanh(qkᵀ·s/cap))·v.
    int64_t groups = cfg_.num_attention_heads / cfg_.num_key_value_heads;
    at::Tensor kk = k.repeat_interleave(groups, 1), vv = v.repeat_interleave(groups, 1);
    at::Tensor scores = at::matmul(q, kk.transpose(2, 3)) * scale;
    double cap = *cfg_.attn_logit_softcapping;
    scores = at::tanh(scores / cap) * cap;
    at::Tensor m =
        mask.defined() ? mask : at::ones({T, k.size(2)}, q.options().dtype(at::kBool)).tril(k.size(2) - T);
    scores = scores.masked_fill(m.logical_not(), -INFINITY);
    out = at::matmul(at::softmax(scores, -1, at::kFloat).to(q.scalar_type()), vv);
  } else {
    out = DotProductAttention(q, k, v, mask, scale);
  }
  out = out.transpose(1, 2).reshape({B, T, -1}).to(x.scalar_type());
  if (const InferenceWeights* iw = Inference(i, out))
    return ProjectWithLora(iw->o, out, lora, i, {LinearKind::kO}, {cfg_.hidden_size});
  return ApplyLinear(out, L.o, L.o_bias, lora, i, LinearKind::kO);
}

at::Tensor Transformer::Mlp(int64_t i, const at::Tensor& x, const LoraBatch* lora) const {
  const auto& L = layers_[i];
  at::Tensor none, g, u;
  const InferenceWeights* iw = Inference(i, x);
  if (iw) {
    int64_t ff = cfg_.intermediate_size;
    at::Tensor gu = ProjectWithLora(iw->gate_up, x, lora, i, {LinearKind::kGate, LinearKind::kUp}, {ff, ff});
    auto parts = gu.split_with_sizes({ff, ff}, -1);
    g = parts[0];
    u = parts[1];
  } else {
    g = ApplyLinear(x, L.gate, none, lora, i, LinearKind::kGate);
    u = ApplyLinear(x, L.up, none, lora, i, LinearKind::kUp);
  }
  at::Tensor h = GatedActivation(g, u);
  if (iw) return ProjectWithLora(iw->down, h, lora, i, {LinearKind::kDown}, {cfg_.hidden_size});
  return ApplyLinear(h, L.down, none, lora, i, LinearKind::kDown);
}

at::Tensor Transformer::GatedActivation(const at::Tensor& g, const at::Tensor& u) const {
  at::Tensor act = cfg_.hidden_act == "silu" ? at::silu(g)
                   : cfg_.hidden_act == "gelu" ? at::gelu(g)
                                               : at::gelu(g, "tanh");
  return act * u;
}

at::Tensor Transformer::Layer(int64_t i, const at::Tensor& h, const at::Tensor& cos,
                              const at::Tensor& sin, const at::Tensor& mask,
                              const ForwardArgs& args) const {
  const auto& L = layers_[i];
  at::Tensor a = Attention(i, RmsNorm(h, L.input_norm), cos, sin, mask, args);
  if (cfg_.gemma()) {
    at::Tensor h2 = h + RmsNorm(a, L.post_attn_norm);
    at::Tensor m = Mlp(i, RmsNorm(h2, L.pre_ff_norm), args.lora);
    return h2 + RmsNorm(m, L.post_ff_norm);
  }
  at::Tensor h2 = h + a;
  return h2 + Mlp(i, RmsNorm(h2, L.post_attn_norm), args.lora);
}

at::Tensor Transformer::Positions(const ForwardArgs& args, const at::Tensor& valid, int64_t past) const {
  if (args.position_ids.defined()) return args.position_ids.to(device_);
  at::Tensor prior = past > 0 ? args.cache->valid().narrow(1, 0, past).sum(1, true, at::kLong)
                              : at::zeros({valid.size(0), 1}, at::kLong).to(device_);
  return (prior + valid.to(at::kLong).cumsum(1) - 1).clamp_min(0);
}

std::pair<at::Tensor, at::Tensor> Transformer::RopeTables(const at::Tensor& positions,
                                                          const at::Tensor& inv) const {
  // (B, 1, T, hd), computed in fp32 then cast like the reference.
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv.view({1, 1, -1});
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype_).unsqueeze(1), emb.sin().to(dtype_).unsqueeze(1)};
}

at::Tensor Transformer::Hidden(const ForwardArgs& args) const {
  if (FusedDecode(args)) return DecodeHidden(args);
  const at::Tensor& ids = args.input_ids;
  int64_t B = ids.size(0), T = ids.size(1);
  auto bool_opts = at::TensorOptions().dtype(at::kBool).device(device_);
  at::Tensor valid = args.valid.defined() ? args.valid.to(device_, at::kBool) : at::ones({B, T}, bool_opts);
  int64_t past = args.cache ? args.cache->length() : 0;
  // Callers build ids, masks and positions on the host; everything below runs on the weights' device.
  at::Tensor positions = Positions(args, valid, past);
  if (args.cache) args.cache->valid().narrow(1, past, T).copy_(valid);
  at::Tensor kv_valid = args.cache ? args.cache->valid().narrow(1, 0, past + T) : valid;
  int64_t S = past + T;

  // Masks (B, 1, T, S): causal ∧ key is real (∧ key in the query's segment), plus a sliding window
  // for local layers. A query always sees its own slot so padded rows never produce NaN.
  TORCH_CHECK(!args.segment_ids.defined() || args.cache == nullptr,
              "segment_ids are for passes without a KV cache");
  bool all_real = !args.valid.defined() && past == 0 && !args.segment_ids.defined();
  auto qs = at::arange(past, S, at::TensorOptions().dtype(at::kLong).device(device_)).view({T, 1});
  auto ks = at::arange(0, S, at::TensorOptions().dtype(at::kLong).device(device_)).view({1, S});
  at::Tensor causal = ks <= qs;
  at::Tensor same_segment;
  if (args.segment_ids.defined()) {
    at::Tensor seg = args.segment_ids.to(device_);
    same_segment = (seg.unsqueeze(2) == seg.unsqueeze(1)).unsqueeze(1);  // (B, 1, T, T)
  }
  at::Tensor global_mask, local_mask;
  auto build = [&](const at::Tensor& base) {
    at::Tensor m = base.view({1, 1, T, S}) & kv_valid.view({B, 1, 1, S});
    if (same_segment.defined()) m = m & same_segment;
    return m | (ks == qs).view({1, 1, T, S});
  };
  if (!all_real) global_mask = build(causal);
  bool need_local = cfg_.sliding_window && *cfg_.sliding_window < S;
  if (need_local) local_mask = build(causal & (ks > qs - *cfg_.sliding_window));
  else local_mask = global_mask;
  // Training in fp32 (packed rows): SDPA would turn a boolean mask into an additive one in every
  // layer and keep each for the backward; built once here, every layer shares it (llama-20m, 4 rows
  // of 2048: 4.7 GB peak instead of 5.2). The soft-capped path and fp32-backward attention take
  // boolean masks.
  if (c10::GradMode::is_enabled() && dtype_ == at::kFloat && !cfg_.attn_logit_softcapping) {
    auto additive = [](const at::Tensor& m) {
      return m.defined() ? at::zeros(m.sizes(), m.options().dtype(at::kFloat))
                               .masked_fill_(m.logical_not(), -INFINITY)
                         : m;
    };
    bool same = local_mask.defined() && local_mask.is_same(global_mask);
    global_mask = additive(global_mask);
    local_mask = same ? global_mask : additive(local_mask);
  }

  auto [cos_g, sin_g] = RopeTables(positions, inv_freq_global_);
  at::Tensor cos_l = cos_g, sin_l = sin_g;
  if (cfg_.gemma()) std::tie(cos_l, sin_l) = RopeTables(positions, inv_freq_local_);

  at::Tensor h = at::embedding(embed_, ids.to(device_));
  if (cfg_.gemma()) h = h * at::scalar_tensor(std::sqrt(static_cast<double>(cfg_.hidden_size)), at::kFloat).to(dtype_);
  for (int64_t i = 0; i < cfg_.num_hidden_layers; ++i) {
    bool local = !cfg_.layer_is_sliding.empty() && cfg_.layer_is_sliding[i];
    const at::Tensor& cos = local ? cos_l : cos_g;
    const at::Tensor& sin = local ? sin_l : sin_g;
    const at::Tensor& mask = local ? local_mask : global_mask;
    if (args.checkpoint_layers && c10::GradMode::is_enabled() && args.cache == nullptr) {
      h = CheckpointedCall([=, this](const at::Tensor& x) { return Layer(i, x, cos, sin, mask, args); }, h);
    } else {
      h = Layer(i, h, cos, sin, mask, args);
    }
  }
  if (args.cache) args.cache->Advance(T);
  return RmsNorm(h, final_norm_);
}

at::Tensor Transformer::Logits(const at::Tensor& hidden, const LoraBatch* lora) const {
  const at::Tensor& head = cfg_.tie_word_embeddings ? embed_ : lm_head_;
  std::shared_ptr<const PackedLinear> packed = PackedHead(hidden);
  at::Tensor head_t = packed ? at::Tensor() : InferenceHead();
  at::Tensor logits;
  if (packed == nullptr && !head_t.defined()) {
    logits = ApplyLinear(hidden, head, {}, lora, -1, LinearKind::kLmHead);
  } else {
    at::Tensor y = packed ? packed->Apply(hidden) : Project(hidden, head_t);
    logits = Stacked(lora, hidden) ? lora->stack->Apply(y, hidden, -1, {LinearKind::kLmHead}, {cfg_.vocab_size})
                                   : AddLora(y, hidden, lora, -1, LinearKind::kLmHead);
  }
  logits = logits.to(at::kFloat);
  if (cfg_.final_logit_softcapping) {
    double cap = *cfg_.final_logit_softcapping;
    logits = at::tanh(logits / cap) * cap;
  }
  return logits;
}

at::Tensor Transformer::TargetLogprobs(const at::Tensor& hidden, const at::Tensor& targets,
                                       const LoraBatch* lora) const {
  bool head_lora = false;
  if (lora != nullptr)
    for (const auto& g : lora->groups) head_lora = head_lora || (g.adapter && g.adapter->Find(-1, LinearKind::kLmHead));
  at::Tensor head_t = InferenceHead();
  // A trained head (full fine-tuning) goes through the chunked head as its transposed view, which
  // then returns the head's gradient too.
  if (!head_t.defined()) head_t = (cfg_.tie_word_embeddings ? embed_ : lm_head_).t();
  const bool several = targets.dim() == 3;  // (B, T, K): K targets per position
  if (head_lora || cfg_.final_logit_softcapping) {
    at::Tensor logits = Logits(hidden, lora);
    at::Tensor lse = at::logsumexp(logits, -1, true);
    if (several) return logits.gather(-1, targets) - lse;
    return (logits.gather(-1, targets.unsqueeze(-1)) - lse).squeeze(-1);
  }
  int64_t B = hidden.size(0), T = hidden.size(1);
  at::Tensor flat = several ? targets.reshape({B * T, targets.size(2)}) : targets.reshape({B * T});
  at::Tensor lp = ChunkedHeadLogprobs(hidden.reshape({B * T, hidden.size(2)}), head_t, flat);
  return several ? lp.view({B, T, targets.size(2)}) : lp.view({B, T});
}

}  // namespace openrl::model
