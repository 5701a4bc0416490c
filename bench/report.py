"""Prints the benchmark table (Markdown) from bench/out/*.json files written by the benchmarks.

Usage: bench/report.py [FILE.json ...]   (default: every bench/out/<name>.json of DEFAULT_FILES present)
"""
from __future__ import annotations

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402

DEFAULT_FILES = ["train_step", "sampling", "train_step_gguf", "decode_llamacpp", "gguf_import"]


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def rows(doc: dict) -> list[str]:
    out = []
    for r in doc["results"]:
        if doc["benchmark"] == "gguf_import":
            continue  # seconds, not tokens/s: import_rows()
        if doc["benchmark"] == "train_step":
            what = f"train {r['mode']} {r['model']} ({r['parameters'] / 1e6:.1f}M), b{r['batch']}×{r['seq']}"
            mfu = f"{pct(r['ours_mfu'])} / {pct(r['theirs_mfu'])}"
        elif doc["benchmark"] == "decode_llamacpp":
            what = (f"decode b{r['batch']}×{r['new_tokens']} greedy {r['model']}, ours {r['ours_dtype']} "
                    f"vs llama.cpp {r['theirs_type']}")
            mfu = "n/a"
        else:
            what = f"sample {r['prompts']}×{r['new_tokens']} greedy {r['model']}"
            if r.get("lora_rank"):
                what += f" + LoRA r{r['lora_rank']}"
            mfu = "n/a"
        ours = "skipped" if r["ours_tokens_per_second"] is None else f"{r['ours_tokens_per_second']:.0f}"
        ratio = "n/a" if r["ratio"] is None else f"**{r['ratio']:.2f}×**"
        out.append(f"| {what} | {ours} | {r['theirs_tokens_per_second']:.0f} | {ratio} | {mfu} |")
    return out


def import_rows(doc: dict) -> list[str]:
    out = []
    for r in doc["results"]:
        w = r["same_weights"]
        same = "n/a" if "max_abs_diff" not in w else f"{w['max_abs_diff']:.3g} ({w['tensors_compared']} tensors)"
        out.append(f"| import {r['gguf']} → {r['dtype']} | {r['ours_seconds']:.2f} | {r['theirs_seconds']:.2f} | "
                   f"**{r['ratio']:.2f}×** | {same} |")
    return out


def main() -> None:
    paths = [pathlib.Path(p) for p in sys.argv[1:]] or [common.OUT / f"{n}.json" for n in DEFAULT_FILES]
    docs = [json.loads(p.read_text()) for p in paths if p.exists()]
    if not docs:
        sys.exit("bench/report.py: no results found; run scripts/bench")
    m, v = docs[0]["machine"], docs[0]["versions"]
    print(f"machine: {m['cpu']}, nproc {m['nproc']}, {m['date']}, "
          f"load average at start {m['load_average_at_start']}")
    extra = sorted({f"{k} {x}" for d in docs for k, x in d["versions"].items()
                    if k not in ("torch", "transformers", "peft", "python")})
    print(f"peers: torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}"
          + "".join(f", {e}" for e in extra))
    for d in docs:
        if "matmul_peak_flops" in d:
            print(f"measured matmul peak: {d['matmul_peak_flops'] / 1e9:.1f} GFLOP/s")
    for d in docs:
        print(f"{d['benchmark']}: device {d['device']}, dtype {d['dtype']}, threads {d['threads']}")
    print()
    print("| benchmark | ours tok/s | theirs tok/s | ours/theirs | MFU ours / theirs |")
    print("|---|---:|---:|---:|---:|")
    for d in docs:
        for line in rows(d):
            print(line)
    imports = [d for d in docs if d["benchmark"] == "gguf_import"]
    if imports:
        print()
        print("| GGUF import | ours s | transformers s | speedup (theirs/ours) | weights max abs diff |")
        print("|---|---:|---:|---:|---:|")
        for d in imports:
            for line in import_rows(d):
                print(line)


if __name__ == "__main__":
    main()
