// Transformer's fused decode step (see FusedDecode in transformer.h): Hidden() for one position
// per row with a KV cache, fp32 on CPU without grad. The projections and adapters are the ones
// Attention() and Mlp() use; what lies between them runs through decode_kernels.h.
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "openrl/model/decode_kernels.h"
#include "openrl/model/transformer.h"

namespace openrl::model {

bool Transformer::FusedDecode(const ForwardArgs& args) const {
  if (args.cache == nullptr || args.input_ids.dim() != 2 || args.input_ids.size(1) != 1) return false;
  if (dtype_ != at::kFloat || !device_.is_cpu() || args.cache->dtype() != at::kFloat) return false;
  if (c10::GradMode::is_enabled() || cfg_.attention_bias || cfg_.head_dim % 2 != 0) return false;
  const char* off = std::getenv("OPENRL_FUSED_DECODE");
  return off == nullptr || std::strcmp(off, "0") != 0;
}

at::Tensor Transformer::DecodeHidden(const ForwardArgs& args) const {
  KvCache& cache = *args.cache;
  const LoraBatch* lora = args.lora;
  const int64_t B = args.input_ids.size(0), H = cfg_.hidden_size, hd = cfg_.head_dim, past = cache.length();
  const int64_t qd = cfg_.num_attention_heads * hd, kd = cfg_.num_key_value_heads * hd,
                ff = cfg_.intermediate_size;
  const bool gemma = cfg_.gemma();
  const double eps = cfg_.rms_norm_eps;

  at::Tensor valid = args.valid.defined()
                         ? args.valid.to(device_, at::kBool)
                         : at::ones({B, 1}, at::TensorOptions().dtype(at::kBool).device(device_));
  at::Tensor positions = Positions(args, valid, past);
  cache.valid().narrow(1, past, 1).copy_(valid);
  auto [cos_g, sin_g] = RopeTables(positions, inv_freq_global_);  // (B, 1, 1, hd)
  at::Tensor cos_l = cos_g, sin_l = sin_g;
  if (gemma) std::tie(cos_l, sin_l) = RopeTables(positions, inv_freq_local_);

  decode::AttentionShape shape;
  shape.heads = cfg_.num_attention_heads;
  shape.kv_heads = cfg_.num_key_value_heads;
  shape.head_dim = hd;
  shape.scale = cfg_.attention_scale();
  shape.norm_eps = eps;
  shape.one_plus_norm = gemma;
  shape.softcap = cfg_.attn_logit_softcapping;

  at::Tensor h = at::embedding(embed_, args.input_ids.to(device_)).reshape({B, H}).contiguous();  // (B, H)
  if (gemma) h.mul_(static_cast<float>(std::sqrt(static_cast<double>(H))));
  at::Tensor x = decode::RmsNorm(h, layers_[0].input_norm, eps, gemma);  // (B, H)
  for (int64_t i = 0; i < cfg_.num_hidden_layers; ++i) {
    const auto& L = layers_[i];
    at::Tensor x3 = x.view({B, 1, H});
    const InferenceWeights* iw = Inference(i, x3);
    at::Tensor qkv =
        ProjectWithLora(iw->qkv, x3, lora, i, {LinearKind::kQ, LinearKind::kK, LinearKind::kV}, {qd, kd, kd});
    bool local = !cfg_.layer_is_sliding.empty() && cfg_.layer_is_sliding[i];
    shape.window = local ? cfg_.sliding_window : std::nullopt;
    shape.q_norm = cfg_.has_qk_norm() ? L.q_norm : at::Tensor();
    shape.k_norm = cfg_.has_qk_norm() ? L.k_norm : at::Tensor();
    at::Tensor attn = decode::Attention(shape, qkv.view({B, -1}), (local ? cos_l : cos_g).view({B, hd}),
                                        (local ? sin_l : sin_g).view({B, hd}), cache.keys(i), cache.values(i),
                                        cache.valid(), past);  // (B, qd)
    at::Tensor y = ProjectWithLora(iw->o, attn.view({B, 1, qd}), lora, i, {LinearKind::kO}, {H});
    // Llama/Qwen: h += y, x = norm(h). Gemma: h += norm(y), x = pre-feed-forward norm(h).
    x = decode::AddRmsNorm(h, y.view({B, H}), gemma ? L.post_attn_norm : at::Tensor(),
                           gemma ? L.pre_ff_norm : L.post_attn_norm, eps, gemma);
    at::Tensor gu = ProjectWithLora(iw->gate_up, x.view({B, 1, H}), lora, i,
                                    {LinearKind::kGate, LinearKind::kUp}, {ff, ff});
    at::Tensor act;  // (B, 1, ff)
    if (cfg_.hidden_act == "silu") {
      act = decode::SiluMul(gu);
    } else {
      auto parts = gu.split_with_sizes({ff, ff}, -1);
      act = GatedActivation(parts[0], parts[1]);
    }
    at::Tensor m = ProjectWithLora(iw->down, act, lora, i, {LinearKind::kDown}, {H});
    const at::Tensor& next = i + 1 < cfg_.num_hidden_layers ? layers_[i + 1].input_norm : final_norm_;
    x = decode::AddRmsNorm(h, m.view({B, H}), gemma ? L.post_ff_norm : at::Tensor(), next, eps, gemma);
  }
  cache.Advance(1);
  return x.view({B, 1, H});
}

}  // namespace openrl::model
