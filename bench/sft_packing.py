"""Supervised fine-tuning over examples of mixed lengths, with and without packing: `openrl train`
against TRL's SFTTrainer (transformers + PEFT), one epoch of the same dataset, the same LoRA, the
same threads.

The dataset: N examples of random tokens with lengths drawn from a log-normal (median ~90 tokens,
clipped to [16, L]), as chat data tends to be. Four runs of one epoch each:

  - ours unpacked: `openrl train --epochs 1 --batch-size B` (each micro-batch padded to its longest row);
  - ours packed:   `openrl train --packing --max-length L --epochs 1 --batch-size P`;
  - TRL unpacked:  SFTTrainer(per_device_train_batch_size=B) (its collator pads to the longest row);
  - TRL packed:    SFTTrainer(packing=True, max_length=L, per_device_train_batch_size=P) (bfd packing,
                   padding-free: a batch flattened into one row, attention kept per example by
                   transformers' packed-sequence masks).

Figure: trained (target) tokens per second of training time: ours from each step's own timing
(tokens / tokens_per_second, summed), TRL's from Trainer's train_runtime (the training loop,
dataset preparation excluded). The ratios: ours / TRL in each mode, and packed / unpacked.

Usage: bench/sft_packing.py [--threads T] [--examples N] [--max-length L] [--rounds R]
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import random
import subprocess
import sys
import time
import warnings

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402


def make_rows(n: int, vocab: int, longest: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = int(min(longest, max(16, rng.lognormvariate(math.log(90), 0.8))))
        rows.append([rng.randrange(3, vocab) for _ in range(length)])
    return rows


def run_ours(a, model_dir, data, packed: bool) -> dict:
    cmd = [str(a.binary), "train", "--model", str(model_dir), "--data", str(data), "--lora-rank", str(a.lora_rank),
           "--lora-alpha", str(2 * a.lora_rank), "--epochs", "1", "--lr", "1e-4", "--clip", "1.0",
           "--threads", str(a.threads), "--max-length", str(a.max_length)]
    batch = a.packed_batch if packed else a.batch
    cmd += ["--batch-size", str(batch), "--micro-batch", str(batch)]
    if packed:
        cmd.append("--packing")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    steps = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{") and "loss" in l]
    tokens = sum(s["tokens"] for s in steps)
    seconds = sum(s["tokens"] / s["tokens_per_second"] for s in steps)
    return {"command": " ".join(cmd), "steps": len(steps), "tokens": tokens, "seconds": seconds,
            "tokens_per_second": tokens / seconds, "process_wall_seconds": wall,
            "mean_loss": sum(s["loss"] for s in steps) / len(steps)}


def run_trl(a, model_dir, rows, packed: bool) -> dict:
    import peft
    import transformers
    import trl
    from datasets import Dataset
    from tokenizers import Tokenizer, models as tokenizer_models

    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    model = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(r=a.lora_rank, lora_alpha=2 * a.lora_rank, lora_dropout=0.0,
                                                       target_modules=common.LORA_TARGETS, bias="none"))
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, model.config.vocab_size)}}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(tokenizer_models.WordLevel(vocab, unk_token="<pad>")),
        pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    batch = a.packed_batch if packed else a.batch
    args = trl.SFTConfig(output_dir=str(common.OUT / "sft_packing_trl"), report_to=[], use_cpu=True, bf16=False,
                         per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=1e-4,
                         max_grad_norm=1.0, weight_decay=0.0, optim="adamw_torch", save_strategy="no",
                         max_length=a.max_length, packing=packed, logging_steps=1000, disable_tqdm=True,
                         dataloader_num_workers=0)
    trainer = trl.SFTTrainer(model=model, args=args, processing_class=tok,
                             train_dataset=Dataset.from_list([{"input_ids": r} for r in rows]))
    out = trainer.train()
    tokens = sum(len(r) - 1 for r in rows)
    seconds = out.metrics["train_runtime"]
    return {"peer": f"TRL {trl.__version__} SFTTrainer (transformers {transformers.__version__}, attn sdpa, "
                    f"PEFT {peft.__version__})",
            "steps": out.global_step, "tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds,
            "mean_loss": out.training_loss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", type=pathlib.Path, default=common.default_binary())
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--model", default="llama-20m", choices=sorted(common.CONFIGS))
    p.add_argument("--examples", type=int, default=192)
    p.add_argument("--max-length", type=int, default=512, help="longest example and packed row length")
    p.add_argument("--batch", type=int, default=8, help="examples per step, unpacked")
    p.add_argument("--packed-batch", type=int, default=2, help="packed rows per step")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--rounds", type=int, default=1, help="alternate the four runs R times, keep each one's best")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="sft_packing")
    a = p.parse_args()
    common.wait_for_binary(a.binary)

    model_dir = common.OUT / "models" / f"{a.model}-ctx{a.max_length}"
    model_dir.mkdir(parents=True, exist_ok=True)
    hf = common.make_llama(a.model, model_dir, max_positions=a.max_length)
    vocab = hf.config.vocab_size
    del hf
    rows = make_rows(a.examples, vocab, a.max_length, a.seed)
    data = model_dir / f"sft_packing_{a.examples}_{a.seed}.jsonl"
    data.write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    lengths = sorted(len(r) for r in rows)
    print(f"{a.examples} examples, {sum(lengths)} tokens, lengths {lengths[0]}..{lengths[-1]} "
          f"(median {lengths[len(lengths) // 2]}), rows of {a.max_length}", file=sys.stderr)

    runs = {"ours unpacked": lambda: run_ours(a, model_dir, data, False),
            "ours packed": lambda: run_ours(a, model_dir, data, True),
            "TRL unpacked": lambda: run_trl(a, model_dir, rows, False),
            "TRL packed": lambda: run_trl(a, model_dir, rows, True)}
    rounds = []
    for r in range(a.rounds):
        got = {}
        for name, fn in runs.items():
            got[name] = fn()
            print(f"  round {r + 1} {name}: {got[name]['tokens_per_second']:.0f} tok/s "
                  f"({got[name]['steps']} steps, {got[name]['seconds']:.1f} s)", file=sys.stderr, flush=True)
        got["load_average"] = common.load_average()
        rounds.append(got)
    best = {name: max(r[name]["tokens_per_second"] for r in rounds) for name in runs}
    result = {"benchmark": "sft_packing", "machine": common.machine(), "threads": a.threads, "model": a.model,
              "config": {k: str(v) for k, v in vars(a).items()}, "examples": a.examples, "tokens": sum(lengths),
              "peer": rounds[0]["TRL packed"]["peer"], "best_tokens_per_second": best,
              "ratios": {"ours / TRL, unpacked": best["ours unpacked"] / best["TRL unpacked"],
                         "ours / TRL, packed": best["ours packed"] / best["TRL packed"],
                         "ours packed / ours unpacked": best["ours packed"] / best["ours unpacked"],
                         "TRL packed / TRL unpacked": best["TRL packed"] / best["TRL unpacked"]},
              "rounds": rounds}
    path = common.write_result(a.out, result)
    print(f"\n| run | tokens/s |\n|---|---:|")
    for name, v in best.items():
        print(f"| {name} | {v:.0f} |")
    for k, v in result["ratios"].items():
        print(f"{k}: {v:.2f}x")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
