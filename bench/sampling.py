"""Batched sampling throughput: `openrl generate` vs transformers `generate`.

16 prompts (random ids, lengths 8..23, left-padded by both sides) × 128 new tokens, greedy
(temperature 0), end-of-sequence ignored, on the ~20M Llama config, same thread count.
tokens/s = 16·128 / seconds of one batched request.

Model load is excluded on both sides: ours keeps one `openrl generate` process open and sends
the identical request 1 + R times; the first (warm-up) is reported but not scored, and the best of
the next R is. Theirs: the model is loaded once, one warm-up `generate`, then the best of R.

With --lora-rank R both sides decode through the same random LoRA adapter (PEFT layout, all seven
projections, seeded, B non-zero): ours `openrl generate --adapter DIR`, theirs `PeftModel.generate`.

Usage: bench/sampling.py [--threads T] [--rounds R] [--model llama-20m] [--lora-rank R]
"""
from __future__ import annotations

import argparse
import pathlib
import random
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402


def make_prompts(vocab: int, count: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(8 + i % 16)] for i in range(count)]


def make_adapter(model_dir: pathlib.Path, rank: int, seed: int = 0) -> pathlib.Path:
    """A random PEFT adapter on every projection (B drawn, so it changes the outputs), made once."""
    out = model_dir / f"lora-r{rank}"
    if not (out / "adapter_model.safetensors").exists():
        import peft
        import transformers
        base = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model = peft.get_peft_model(base, peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                          target_modules=common.LORA_TARGETS, bias="none"))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        model.save_pretrained(out)
    return out


def run_ours(a, model_dir, prompts) -> dict:
    cmd = [str(a.binary), "generate", "--model", str(model_dir), "--threads", str(a.threads),
           "--dtype", a.dtype_name]
    if a.adapter:
        cmd += ["--adapter", str(a.adapter)]
    if a.device != "cpu":
        cmd += ["--device", a.device]
    req = {"prompt_tokens": prompts, "n": 1, "max_tokens": a.new_tokens, "temperature": 0,
           "ignore_eos": True}
    t0 = time.perf_counter()
    proc = common.JsonLinesProcess(cmd)
    try:
        first, first_s = proc.request(req)
        load_and_first_s = time.perf_counter() - t0
        times, out = [], first
        for _ in range(a.rounds):
            out, s = proc.request(req)
            times.append(s)
    finally:
        proc.close()
    tokens = [s["tokens"] for s in out["samples"]]
    assert all(len(t) == a.new_tokens for t in tokens), "ours stopped early"
    return {"command": " ".join(cmd), "request": {k: v for k, v in req.items() if k != "prompt_tokens"},
            "warmup_request_seconds": first_s, "load_plus_first_request_seconds": load_and_first_s,
            "request_seconds": times, "tokens": tokens}


def run_theirs(a, model_dir, prompts) -> dict:
    import transformers
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype_name)
    model = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype).to(a.device).eval()
    peer = f"transformers {transformers.__version__} LlamaForCausalLM.generate"
    if a.adapter:
        import peft
        model = peft.PeftModel.from_pretrained(model, a.adapter).to(a.device).eval()
        peer = f"PEFT {peft.__version__} PeftModel(LoRA r{a.lora_rank}).generate on {peer[:-9]}"
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(a.device), mask.to(a.device)
    gen = transformers.GenerationConfig(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                                        do_sample=False, pad_token_id=0, eos_token_id=None,
                                        bos_token_id=1, use_cache=True)

    def once():
        common.sync(a.device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
        common.sync(a.device)
        return out, time.perf_counter() - t0

    _, warm = once()
    times = []
    for _ in range(a.rounds):
        out, s = once()
        times.append(s)
    new = out[:, width:].tolist()
    assert all(len(t) == a.new_tokens for t in new)
    return {"peer": f"{peer} (greedy, KV cache, attn {model.config._attn_implementation})",
            "warmup_request_seconds": warm, "request_seconds": times, "tokens": new}


def agreement(a_rows, b_rows) -> dict:
    prefix = []
    for x, y in zip(a_rows, b_rows):
        n = 0
        while n < min(len(x), len(y)) and x[n] == y[n]:
            n += 1
        prefix.append(n)
    return {"identical_rows": sum(1 for x, y in zip(a_rows, b_rows) if x == y),
            "mean_common_prefix": sum(prefix) / len(prefix)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", type=pathlib.Path, default=common.default_binary())
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=2, help="timed requests per side after the warm-up")
    p.add_argument("--model", default="llama-20m", choices=sorted(common.CONFIGS))
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--device", default="cpu", help="peer device; ours gets --device only if not cpu")
    p.add_argument("--dtype", dest="dtype_name", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--skip-ours", action="store_true", help="peer only (e.g. a GPU reference figure)")
    p.add_argument("--lora-rank", type=int, default=0, help="decode through a random LoRA adapter of this rank")
    p.add_argument("--out", default="sampling")
    a = p.parse_args()
    a.adapter = None
    if not a.skip_ours:
        common.wait_for_binary(a.binary)
    info = {"benchmark": "sampling", "machine": common.machine(), "versions": common.versions(),
            "threads": a.threads, "device": a.device, "dtype": a.dtype_name, "argv": sys.argv}
    model_dir = common.OUT / "models" / a.model
    model_dir.mkdir(parents=True, exist_ok=True)
    hf = common.make_llama(a.model, model_dir)
    prompts = make_prompts(hf.config.vocab_size, a.prompts)
    del hf
    if a.lora_rank:
        a.adapter = make_adapter(model_dir, a.lora_rank)
    ours = None if a.skip_ours else run_ours(a, model_dir, prompts)
    theirs = run_theirs(a, model_dir, prompts)
    total = a.prompts * a.new_tokens
    best_ours = total / min(ours["request_seconds"]) if ours else None
    best_theirs = total / min(theirs["request_seconds"])
    info["results"] = [{
        "model": a.model, "prompts": a.prompts, "new_tokens": a.new_tokens, "lora_rank": a.lora_rank,
        "prompt_lengths": [len(x) for x in prompts], "command": ours and ours["command"],
        "peer": theirs["peer"], "ours_tokens_per_second": best_ours, "theirs_tokens_per_second": best_theirs,
        "ratio": best_ours / best_theirs if ours else None,
        "greedy_agreement": agreement(ours["tokens"], theirs["tokens"]) if ours else None,
        "ours": ours and {k: v for k, v in ours.items() if k != "tokens"},
        "theirs": {k: v for k, v in theirs.items() if k != "tokens"}}]
    info["machine"]["load_average_at_end"] = common.load_average()
    print(f"sampling: ours {best_ours or 0:.0f} tok/s, theirs {best_theirs:.0f} tok/s "
          f"(ratio {info['results'][0]['ratio'] or 0:.2f})", file=sys.stderr)
    path = common.write_result(a.out, info)
    print(f"sampling: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
