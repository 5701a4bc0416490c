"""Tiny random-weight models of each family, made with transformers and saved as HF dirs."""
import torch
import transformers


def _config(family: str):
    common = dict(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "llama":
        return transformers.LlamaConfig(
            **common, tie_word_embeddings=False,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
            rope_theta=500000.0)
    if family == "qwen3":
        return transformers.Qwen3Config(**common, head_dim=16, tie_word_embeddings=True,
                                        rope_theta=1000000.0)
    if family == "gemma3":
        return transformers.Gemma3TextConfig(
            **common, head_dim=16, tie_word_embeddings=True, sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            query_pre_attn_scalar=24)
    raise ValueError(family)


MODEL_CLASSES = {"llama": transformers.LlamaForCausalLM, "qwen3": transformers.Qwen3ForCausalLM,
                 "gemma3": transformers.Gemma3ForCausalLM}


def make_model(family: str, out_dir, seed: int = 0, dtype=torch.float32):
    """Builds a random model whose norms are random too (so every weight matters) and saves it."""
    torch.manual_seed(seed)
    cfg = _config(family)
    model = MODEL_CLASSES[family](cfg).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.2 + (0.0 if family == "gemma3" else 1.0))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    model.generation_config.eos_token_id = None
    model.save_pretrained(out_dir, safe_serialization=True)
    return model
