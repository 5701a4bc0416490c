// LoRA adapters over a frozen base: W·x + scale·B(A·x), applied in exactly one place
// (ApplyLinear). Several adapters can serve one batch: each owns a set of rows.
// Save/load in PEFT layout lives in peft_io.h.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/model/config.h"

namespace openrl::model {

// The projections a LoRA adapter may target, named as in PEFT's target_modules.
enum class LinearKind : uint8_t { kQ, kK, kV, kO, kGate, kUp, kDown, kLmHead };
std::string_view LinearName(LinearKind k);  // "q_proj", ..., "lm_head"
std::optional<LinearKind> LinearFromName(std::string_view name);

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16.0;
  double dropout = 0.0;
  bool use_rslora = false;  // scale = alpha / sqrt(rank) instead of alpha / rank
  std::set<LinearKind> targets = {LinearKind::kQ, LinearKind::kK, LinearKind::kV, LinearKind::kO,
                                  LinearKind::kGate, LinearKind::kUp, LinearKind::kDown};
  double scale() const;
  Status Validate() const;
};

// One adapter: A (r, in) and B (out, r) per (layer, projection). lm_head uses layer -1.
class LoraAdapter {
 public:
  struct Pair {
    at::Tensor a;  // (r, in)
    at::Tensor b;  // (out, r)
  };
  // Fresh adapter: A ~ kaiming-uniform (as PEFT), B = 0, so the adapter starts as the identity.
  static std::unique_ptr<LoraAdapter> Create(const ModelConfig& model, const LoraConfig& cfg,
                                             at::ScalarType dtype, at::Device device, uint64_t seed);

  const LoraConfig& config() const { return cfg_; }
  const Pair* Find(int64_t layer, LinearKind kind) const;
  Pair* Find(int64_t layer, LinearKind kind);
  void Set(int64_t layer, LinearKind kind, Pair p);
  // Trainable tensors in a stable order (for the optimizer and checksums).
  std::vector<at::Tensor> Parameters() const;
  // PEFT tensor names: base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight ...
  std::vector<std::pair<std::string, at::Tensor>> NamedTensors() const;
  void SetRequiresGrad(bool on);

  explicit LoraAdapter(LoraConfig cfg) : cfg_(std::move(cfg)) {}

 private:
  LoraConfig cfg_;
  std::map<std::pair<int64_t, LinearKind>, Pair> pairs_;
};

class LoraStack;

// Which rows of a batch use which adapter. Rows not covered use the base model alone.
struct LoraBatch {
  struct Group {
    const LoraAdapter* adapter = nullptr;
    at::Tensor rows;  // int64 row indices into the batch; undefined = every row
  };
  std::vector<Group> groups;
  bool training = false;  // enables LoRA dropout
  // Optional, inference only: the same adapters and rows stacked (LoraStack). When set, the fused
  // inference path of Transformer applies it instead of the per-group, per-projection loop.
  const LoraStack* stack = nullptr;
};

// Inference (no autograd): every adapter of a batch stacked per (layer, projection group), so a
// few matmuls apply all of them to all rows at once, however many adapters the batch mixes,
// instead of a cast, two matmuls, a scale, a cast and an add per adapter and projection.
// Projections that read the same input (q|k|v, gate|up) share one stacked A and one
// block-diagonal B with the scale folded in. With up to kOneHotMaxSlots adapters, every row goes
// through all the adapters' A's in one GEMM, the ranks of the adapters not its own are zeroed, and
// one GEMM goes through all the B's: the extra FLOPs grow with the number of adapters, while
// gathering each row's own A and B copies both per row per call. On a CPU decode step of
// SmolLM2-135M's shapes (2 threads) the one-hot form was 1.4× faster at 3–4 adapters, 1.2× at 5,
// level at 6 and slower at 8 (bench/RESULTS.md); more adapters than kOneHotMaxSlots gather. A layer's stack
// is built on first use and kept while the adapters' tensors are unchanged, so a decode loop pays for it
// once. One forward at a time.
class LoraStack {
 public:
  static constexpr int64_t kOneHotMaxSlots = 5;
  // adapters[s] is slot s; row_slots[b] is row b's slot, or -1 for the base model alone.
  LoraStack(std::vector<const LoraAdapter*> adapters, const std::vector<int64_t>& row_slots, at::Device device);
  const std::vector<const LoraAdapter*>& adapters() const { return adapters_; }
  // Rows joined or left: re-points them at slots, keeping the stacked weights.
  void SetRows(const std::vector<int64_t>& row_slots);
  // y = x·[W_k1; W_k2; …]ᵀ of shape (B, T, Σ widths) plus each row's adapter on those projections
  // (kinds in y's order, widths their output sizes). x: (B, T, in).
  at::Tensor Apply(const at::Tensor& y, const at::Tensor& x, int64_t layer, std::initializer_list<LinearKind> kinds,
                   std::initializer_list<int64_t> widths) const;

 private:
  struct Entry {
    std::vector<int64_t> key;  // the tensors it was built from: data pointers and versions
    int64_t rank = 0;          // stacked rank R (0: no adapter targets these projections)
    at::Tensor a_cat, b_cat;   // (in, S·R), (S·R, out) fp32: slot s in columns / rows [s·R, (s+1)·R)
  };
  std::vector<int64_t> Key(int64_t layer, std::initializer_list<LinearKind> kinds) const;
  std::vector<const LoraAdapter*> adapters_;
  at::Device device_;
  at::Tensor onehot_;    // (B, S) fp32: 1 at each row's slot (none for base-model rows)
  at::Tensor slots_;     // (B,) int64: each row's slot (0 for base-model rows, masked by row_used_)
  at::Tensor row_used_;  // (B, 1, 1) fp32 0/1 when some row uses no adapter, else undefined
  bool single_ = false;  // one adapter on every row: plain matmuls
  mutable std::map<std::pair<int64_t, LinearKind>, Entry> entries_;
};

// y = x·Wᵀ (+ bias) + Σ_groups scale·(drop(x[rows])·Aᵀ)·Bᵀ on those rows.
// x: (B, T, in), weight: (out, in) → (B, T, out).
at::Tensor ApplyLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       const LoraBatch* lora, int64_t layer, LinearKind kind);
// The LoRA part alone: y + Σ_groups scale·(drop(x[rows])·Aᵀ)·Bᵀ (for callers that computed x·Wᵀ
// another way, e.g. with fused inference weights).
at::Tensor AddLora(at::Tensor y, const at::Tensor& x, const LoraBatch* lora, int64_t layer, LinearKind kind);

// The same for projections that read the same x and whose outputs y holds side by side (q|k|v,
// gate|up; or one projection): kinds in y's order, widths their output sizes. Per adapter, one
// cast of x, one A matmul over the stacked A's, the scale on the rank-sized intermediate and one
// B matmul through the block-diagonal of the B's; under autograd, their backward is as short.
// With LoRA dropout in training, each projection draws its own mask, as in PEFT.
at::Tensor AddLoraGroup(at::Tensor y, const at::Tensor& x, const LoraBatch* lora, int64_t layer,
                        std::initializer_list<LinearKind> kinds, std::initializer_list<int64_t> widths);

}  // namespace openrl::model
