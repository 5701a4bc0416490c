"""Training-step throughput: `openrl train` vs transformers (+PEFT) with torch.optim.AdamW.

One step = forward + backward + global grad-norm clip (1.0) + AdamW update, on the same batch
(B sequences of T+1 random tokens → B·T target tokens), the same weights, the same thread count.
Steps before --warmup are not averaged; tokens/s = measured tokens / measured seconds.

MFU = flops_per_token · tokens/s / peak, with peak a 2048×2048 matmul timed in this run and
  full fine-tuning: flops_per_token = 6·N            (N = all parameters, tied embedding once)
  LoRA:             flops_per_token = 4·N + 6·N_lora  (forward 2N + input-gradients 2N through
                                                       the frozen base, no base weight gradients)
Attention-score FLOPs (≈ 6·L·T·d per token, <5% here) are left out of both.

Models: the random-weight configs of common.CONFIGS, or a real GGUF model of common.GGUF_MODELS
(e.g. smollm2-135m: SmolLM2-135M-Instruct, imported once by `openrl model import --dtype float32`
under bench/out/models/ and loaded from that directory by both sides; LoRA only).

Usage: bench/train_step.py [--threads T] [--rounds R] [--models a,b] [--modes full,lora]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import random
import subprocess
import sys
import time
import warnings

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402

# (batch, steps, warm-up steps) per model, sized so the whole bench fits ~10 minutes on 2 cores.
DEFAULTS = {"llama-20m": (8, 5, 2), "llama-120m": (4, 3, 1), "smollm2-135m": (4, 3, 1), "smollm2-shape": (4, 3, 1)}
# Modes benchmarked for the imported real models (others: --modes).
GGUF_MODES = {"smollm2-135m": ["lora"]}


def make_data(path: pathlib.Path, vocab: int, batch: int, seq: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    rows = [[rng.randrange(3, vocab) for _ in range(seq + 1)] for _ in range(batch)]
    path.write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    return rows


def measured(steps: list[dict], warmup: int) -> float:
    """tokens/s over the steps after warm-up (total tokens / total seconds)."""
    kept = steps[warmup:]
    return sum(s["tokens"] for s in kept) / sum(s["tokens"] / s["tokens_per_second"] for s in kept)


def run_ours(a, model_dir, data_path, mode, batch, steps, warmup) -> dict:
    binary = a.binary
    cmd = [str(binary), "train", "--model", str(model_dir), "--data", str(data_path),
           "--lora-rank", str(a.lora_rank if mode == "lora" else 0), "--lora-alpha", str(2 * a.lora_rank),
           "--steps", str(steps), "--batch-size", str(batch), "--micro-batch", str(batch),
           "--lr", "1e-4", "--clip", "1.0", "--threads", str(a.threads), "--dtype", a.dtype_name]
    if a.device != "cpu":
        cmd += ["--device", a.device]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    return {"command": " ".join(cmd), "steps": lines, "tokens_per_second": measured(lines, warmup),
            "first_loss": lines[0]["loss"], "first_grad_norm": lines[0]["grad_norm"],
            "process_wall_seconds": wall}


def run_theirs(a, model_dir, rows, mode, steps, warmup) -> dict:
    import transformers
    warnings.filterwarnings("ignore", category=FutureWarning)  # PEFT calls a deprecated transformers API
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype_name)
    model = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype).to(a.device)
    model.train()
    peer = f"transformers {transformers.__version__} LlamaForCausalLM (attn sdpa)"
    if mode == "lora":
        import peft
        lc = peft.LoraConfig(r=a.lora_rank, lora_alpha=2 * a.lora_rank, lora_dropout=0.0,
                             target_modules=common.LORA_TARGETS, bias="none")
        model = peft.get_peft_model(model, lc)
        peer += f" + PEFT {peft.__version__} LoRA"
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            fused=a.fused_adamw)
    peer += f" + torch.optim.AdamW(fused={a.fused_adamw})"
    seqs = torch.tensor(rows, dtype=torch.long, device=a.device)
    inputs, targets = seqs[:, :-1], seqs[:, 1:]
    out = []
    for _ in range(steps):
        common.sync(a.device)
        t0 = time.perf_counter()
        logits = model(input_ids=inputs).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_v, norm_v = loss.item(), norm.item()
        common.sync(a.device)
        dt = time.perf_counter() - t0
        out.append({"loss": loss_v, "grad_norm": norm_v, "tokens": targets.numel(),
                    "tokens_per_second": targets.numel() / dt})
    trainable = sum(p.numel() for p in params)
    return {"peer": peer, "steps": out, "tokens_per_second": measured(out, warmup),
            "first_loss": out[0]["loss"], "first_grad_norm": out[0]["grad_norm"], "trainable": trainable}


def bench_one(a, name: str, mode: str) -> dict:
    if name in common.GGUF_MODELS:
        import transformers
        model_dir = common.imported_model(a.binary, name)
        hf = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    else:
        model_dir = common.OUT / "models" / name
        model_dir.mkdir(parents=True, exist_ok=True)
        hf = common.make_llama(name, model_dir)
    n = common.num_params(hf)
    vocab = hf.config.vocab_size
    del hf
    batch, steps, warmup = DEFAULTS[name]
    batch, steps, warmup = a.batch or batch, a.steps or steps, a.warmup if a.warmup is not None else warmup
    data = model_dir / f"train_b{batch}_t{a.seq}.jsonl"
    rows = make_data(data, vocab, batch, a.seq)
    rounds = []
    for r in range(a.rounds):
        ours = None if a.skip_ours else run_ours(a, model_dir, data, mode, batch, steps, warmup)
        theirs = run_theirs(a, model_dir, rows, mode, steps, warmup)
        rounds.append({"ours": ours, "theirs": theirs, "load_average": common.load_average()})
        print(f"  {name} {mode} round {r + 1}: ours {ours['tokens_per_second'] if ours else 0:.0f} tok/s, "
              f"theirs {theirs['tokens_per_second']:.0f} tok/s", file=sys.stderr, flush=True)
    best_ours = None if a.skip_ours else max(x["ours"]["tokens_per_second"] for x in rounds)
    best_theirs = max(x["theirs"]["tokens_per_second"] for x in rounds)
    first = rounds[0]["ours"] or {}
    n_lora = rounds[0]["theirs"]["trainable"] if mode == "lora" else 0
    flops_per_token = 6 * n if mode == "full" else 4 * n + 6 * n_lora
    return {"model": name, "mode": mode, "parameters": n, "lora_parameters": n_lora,
            "batch": batch, "seq": a.seq, "steps": steps, "warmup_steps": warmup,
            "flops_per_token": flops_per_token, "peer": rounds[0]["theirs"]["peer"],
            "command": first.get("command"),
            "ours_tokens_per_second": best_ours, "theirs_tokens_per_second": best_theirs,
            "ratio": best_ours / best_theirs if best_ours else None,
            "first_step_loss": {"ours": first.get("first_loss"), "theirs": rounds[0]["theirs"]["first_loss"]},
            "first_step_grad_norm": {"ours": first.get("first_grad_norm"),
                                     "theirs": rounds[0]["theirs"]["first_grad_norm"]},
            "rounds": rounds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", type=pathlib.Path, default=common.default_binary())
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=1, help="alternate ours/theirs R times, keep the best of each")
    p.add_argument("--models", default="llama-20m,llama-120m")
    p.add_argument("--modes", default="full,lora")
    p.add_argument("--batch", type=int, default=0, help="sequences per step; 0 = per-model default")
    p.add_argument("--seq", type=int, default=128, help="target tokens per sequence")
    p.add_argument("--steps", type=int, default=0, help="steps per run; 0 = per-model default")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--device", default="cpu", help="peer device; ours gets --device only if not cpu")
    p.add_argument("--dtype", dest="dtype_name", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-fused-adamw", dest="fused_adamw", action="store_false",
                   help="peer uses the default (for-each) AdamW instead of fused=True")
    p.add_argument("--skip-ours", action="store_true", help="peer only (e.g. a GPU reference figure)")
    p.add_argument("--out", default="train_step")
    a = p.parse_args()
    if not a.skip_ours:
        common.wait_for_binary(a.binary)
    info = {"benchmark": "train_step", "machine": common.machine(), "versions": common.versions(),
            "threads": a.threads, "device": a.device, "dtype": a.dtype_name, "argv": sys.argv}
    # The peak is sampled before each model and at the end; the best sample is the peak (on a
    # shared machine a single sample can land in a busy moment and understate it).
    peaks = []

    def peak():
        peaks.append(common.matmul_peak_flops(a.threads, device=a.device, dtype=getattr(torch, a.dtype_name)))

    results = []
    for name in a.models.split(","):
        peak()
        print(f"train_step: {name}, {a.threads} threads, matmul sample {peaks[-1] / 1e9:.1f} GFLOP/s",
              file=sys.stderr, flush=True)
        for mode in a.modes.split(","):
            if mode in GGUF_MODES.get(name, [mode]):
                results.append(bench_one(a, name, mode))
    peak()
    info["matmul_peak_samples"] = peaks
    info["matmul_peak_flops"] = max(peaks)
    for r in results:
        ours = r["ours_tokens_per_second"]
        r["ours_mfu"] = r["flops_per_token"] * ours / max(peaks) if ours else None
        r["theirs_mfu"] = r["flops_per_token"] * r["theirs_tokens_per_second"] / max(peaks)
    info["results"] = results
    info["machine"]["load_average_at_end"] = common.load_average()
    path = common.write_result(a.out, info)
    print(f"train_step: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
