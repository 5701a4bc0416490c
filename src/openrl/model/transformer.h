// Transformer: a decoder-only language model on libtorch — Llama 3 (rope scaling), Qwen 3
// (q/k norms) and Gemma 3 text (scaled embeddings, (1+w) RMSNorm, pre/post norms, local and
// global layers) — with GQA, tied or untied embeddings, bf16/fp16/fp32, a KV cache, LoRA
// through ApplyLinear, and optional activation checkpointing per layer.
//
// Weights use Hugging Face names ("model.layers.0.self_attn.q_proj.weight"), so loading and
// saving a checkpoint is a name-for-name copy (checkpoint.h).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/model/config.h"
#include "openrl/model/lora.h"
#include "openrl/model/packed_linear.h"

namespace openrl::model {

// Keys and values of every layer for a batch, left-padded so all rows share one write slot.
class KvCache {
 public:
  // On CPU a bf16/fp16 model keeps its keys and values in fp32: the CPU attention kernels are
  // 4–7× slower in half precision for a decode step's single query row (measured: 1.1–1.3 ms vs
  // 0.17 ms at 150 keys), and a CPU's memory holds the doubled cache easily. A decode step's
  // query meets the cache in fp32; a prefill casts the cached keys and values back (exactly) and
  // attends in the model's dtype. The attention output returns to the model's dtype.
  KvCache(const ModelConfig& cfg, int64_t batch, int64_t capacity, at::ScalarType dtype,
          at::Device device);
  // Bytes of keys and values one token of one row takes in such a cache, over every layer.
  static int64_t BytesPerToken(const ModelConfig& cfg, at::ScalarType dtype, at::Device device);
  at::ScalarType dtype() const { return dtype_; }
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }
  // (B, capacity) bool: which slots hold real tokens (false for left padding).
  at::Tensor& valid() { return valid_; }
  at::Tensor& keys(int64_t layer) { return k_[layer]; }    // (B, n_kv, capacity, hd)
  at::Tensor& values(int64_t layer) { return v_[layer]; }
  void Advance(int64_t n) { length_ += n; }
  // Keeps only rows `rows` (e.g. when finished sequences leave a batch).
  void SelectRows(const at::Tensor& rows);
  // Continuous batching: the rows of `other` (prefilled separately) join this batch after its own
  // rows. Both are right-aligned at the longer length, so every row keeps writing to the shared
  // slot; the capacity becomes at least `capacity`. Positions and sliding windows stay right:
  // they count a row's real slots, which stay contiguous.
  void Join(const KvCache& other, int64_t capacity);
  // Drops the first `n` slots (left padding no row uses any more), moving the rest left.
  void DropLeading(int64_t n);

 private:
  int64_t batch_, capacity_, length_ = 0;
  at::ScalarType dtype_;
  std::vector<at::Tensor> k_, v_;
  at::Tensor valid_;
};

struct ForwardArgs {
  at::Tensor input_ids;     // (B, T) int64
  at::Tensor position_ids;  // (B, T) int64; default: counting real tokens from 0 per row
  at::Tensor valid;         // (B, T) bool, false for padding; default: all real
  KvCache* cache = nullptr;
  const LoraBatch* lora = nullptr;
  bool checkpoint_layers = false;  // recompute each layer in backward to save activations
  // (B, T) int64, without a cache: sequences packed end to end in a row, each token attending only
  // to the tokens of its own segment (give position_ids that restart at each segment); default: one
  // segment per row.
  at::Tensor segment_ids;
};

class Transformer {
 public:
  using TensorSource = std::function<Result<at::Tensor>(const std::string& name)>;

  // Builds the model from named tensors (converted to dtype/device), checking every expected
  // name and shape against the config. Errors name the tensor and the expected shape.
  static Result<std::unique_ptr<Transformer>> Load(const ModelConfig& cfg, const TensorSource& source,
                                                   at::ScalarType dtype, at::Device device);
  // Random initialization (normal(0, 0.02), norms at their identity), for training from scratch.
  static std::unique_ptr<Transformer> Init(const ModelConfig& cfg, at::ScalarType dtype,
                                           at::Device device, uint64_t seed);

  const ModelConfig& config() const { return cfg_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }

  // Final-normed hidden states (B, T, H).
  at::Tensor Hidden(const ForwardArgs& args) const;
  // Logits (B, T, V) in fp32 from hidden states (lm_head LoRA and softcapping applied).
  at::Tensor Logits(const at::Tensor& hidden, const LoraBatch* lora = nullptr) const;
  // log p(targets) (B, T) fp32 from hidden states (B, T, H), or (B, T, K) for targets (B, T, K)
  // (K targets per position): through the fused, chunked head
  // (fused_head.h) when the head is frozen, carries no LoRA and has no softcapping; otherwise
  // log_softmax of Logits() gathered at the targets.
  at::Tensor TargetLogprobs(const at::Tensor& hidden, const at::Tensor& targets, const LoraBatch* lora = nullptr) const;

  // Every weight with its Hugging Face name (tied lm_head not repeated).
  std::vector<std::pair<std::string, at::Tensor>> NamedParameters() const;
  void SetRequiresGrad(bool on);
  // Visits every LoRA-targetable weight (layer -1 = lm_head; tied heads visit the embedding).
  Status ForEachLinear(const std::function<void(int64_t layer, LinearKind kind, at::Tensor& w)>& fn);

  // Expected names and shapes of the checkpoint tensors, for validation and for writers.
  std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors() const;

  // Bytes of weights the model holds, each storage counted once: its parameters, and the copies
  // made for faster inference (fp32 on CPU: PackedLinear's blocked weights, or, without them,
  // transposed weights). Half precision makes no copies.
  struct WeightMemory {
    int64_t parameters = 0;
    int64_t copies = 0;
  };
  WeightMemory WeightBytes() const;

 private:
  struct Layer {
    // q, k and v are row ranges (views) of qkv_w, gate and up of gate_up_w: the fused projections
    // read the weights in place instead of a concatenated copy. Loading copies into the views.
    at::Tensor qkv_w, gate_up_w;
    at::Tensor q, k, v, o, q_bias, k_bias, v_bias, o_bias;
    at::Tensor gate, up, down;
    at::Tensor input_norm, post_attn_norm, pre_ff_norm, post_ff_norm, q_norm, k_norm;
  };
  Transformer(ModelConfig cfg, at::ScalarType dtype, at::Device device);
  std::vector<std::pair<std::string, at::Tensor*>> Slots();
  void ComputeRopeTables();

  at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w) const;
  at::Tensor Layer(int64_t i, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                   const at::Tensor& mask, const ForwardArgs& args) const;
  at::Tensor Attention(int64_t i, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                       const at::Tensor& mask, const ForwardArgs& args) const;
  at::Tensor Mlp(int64_t i, const at::Tensor& x, const LoraBatch* lora) const;
  at::Tensor GatedActivation(const at::Tensor& g, const at::Tensor& u) const;  // act(g)·u
  // (B, T) positions: args' own, or counting each row's real tokens (cached ones first) from 0.
  at::Tensor Positions(const ForwardArgs& args, const at::Tensor& valid, int64_t past) const;
  // RoPE cos and sin tables (B, 1, T, hd) in the model's dtype for positions (B, T).
  std::pair<at::Tensor, at::Tensor> RopeTables(const at::Tensor& positions, const at::Tensor& inv_freq) const;
  // A decode step (one position per row, with a cache) of an fp32 model on CPU without grad runs
  // through the fused kernels of decode_kernels.h: the same arithmetic as Layer() in a few calls
  // per layer. OPENRL_FUSED_DECODE=0 turns it off (read on every step, so tests and benchmarks can
  // compare both paths in one process).
  bool FusedDecode(const ForwardArgs& args) const;
  at::Tensor DecodeHidden(const ForwardArgs& args) const;

  // One projection of the fused path: x·[W1; W2; …]ᵀ for weights that read the same input (q|k|v,
  // gate|up) or a single one. It holds whichever forms the calls so far needed:
  //  - t: (in, out) (see Transposed()), a view of the layer's fused weight: MKL's path, and the
  //    weight the packed path's backward multiplies with;
  //  - packed: fp32 on CPU (PackedLinear::Available()): PackedLinear's kernels over a blocked copy,
  //    for every call while the layer is frozen (with or without grad) and for the decode steps
  //    ((B, 1, in), B up to 128, kPackedDecodeRows in transformer.cc) of a layer being trained.
  struct Projection {
    at::Tensor t;
    std::shared_ptr<const PackedLinear> packed;
    at::Tensor operator()(const at::Tensor& x, bool frozen) const;
  };
  struct InferenceWeights {
    Projection qkv, gate_up, o, down;
    std::vector<int64_t> versions;  // of the source weights the copies were made from
  };
  // p(x) plus the batch's adapters on those projections (kinds in p's output order, widths theirs).
  at::Tensor ProjectWithLora(const Projection& p, const at::Tensor& x, const LoraBatch* lora, int64_t layer,
                             std::initializer_list<LinearKind> kinds,
                             std::initializer_list<int64_t> widths) const;
  // The fused projections (null under autograd while the layer trains), with the copy that a call
  // on input x needs. Copies are made on first need and dropped when a source weight changes (its
  // version counter moves).
  const InferenceWeights* Inference(int64_t layer, const at::Tensor& x) const;
  // Whether projections can use packed copies (fp32 on CPU, PackedLinear::Available()).
  bool Packs() const;
  // Whether none of layer i's projection weights requires grad.
  bool Frozen(int64_t layer) const;
  // The head's (in, out) copy; also given under autograd while the head is frozen (the chunked
  // head reads it).
  at::Tensor InferenceHead() const;
  // The head as a packed copy for a decode step's hidden states without grad, or null (see Projection).
  std::shared_ptr<const PackedLinear> PackedHead(const at::Tensor& hidden) const;
  // (in, out) weights for `x · w`: a transposed view of w, except for fp32 on a CPU without
  // PackedLinear, where it is a contiguous copy (see the definition).
  at::Tensor Transposed(const at::Tensor& w) const;
  // w itself when the parts are consecutive row ranges of it (the layer's fused storage), else
  // their concatenation (a copy).
  static at::Tensor Fused(const at::Tensor& w, std::initializer_list<const at::Tensor*> parts);
  // Puts a loaded or initialized tensor into a slot: into its storage when the slot is a view
  // of a fused weight, else as the slot's own tensor in the model's dtype and device.
  void Fill(at::Tensor& slot, const at::Tensor& t) const;

  ModelConfig cfg_;
  at::ScalarType dtype_;
  at::Device device_;
  at::Tensor embed_, final_norm_, lm_head_;
  std::vector<struct Layer> layers_;
  at::Tensor inv_freq_global_, inv_freq_local_;  // (hd/2) fp32
  mutable std::mutex inference_mu_;
  mutable std::vector<InferenceWeights> inference_;  // one per layer, sized at construction
  mutable at::Tensor head_t_;
  mutable int64_t head_version_ = -1;
  mutable std::shared_ptr<const PackedLinear> head_packed_;
  mutable int64_t head_packed_version_ = -1;
  mutable const void* head_packed_data_ = nullptr;
};

}  // namespace openrl::model
