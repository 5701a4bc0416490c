"""Prints the benchmark table (Markdown) from bench/out/*.json files written by the benchmarks.

Usage: bench/report.py [FILE.json ...]   (default: bench/out/train_step.json bench/out/sampling.json)
"""
from __future__ import annotations

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def rows(doc: dict) -> list[str]:
    out = []
    for r in doc["results"]:
        if doc["benchmark"] == "train_step":
            what = f"train {r['mode']} {r['model']} ({r['parameters'] / 1e6:.1f}M), b{r['batch']}×{r['seq']}"
            mfu = f"{pct(r['ours_mfu'])} / {pct(r['theirs_mfu'])}"
        else:
            what = f"sample {r['prompts']}×{r['new_tokens']} greedy {r['model']}"
            mfu = "n/a"
        ours = "skipped" if r["ours_tokens_per_second"] is None else f"{r['ours_tokens_per_second']:.0f}"
        ratio = "n/a" if r["ratio"] is None else f"**{r['ratio']:.2f}×**"
        out.append(f"| {what} | {ours} | {r['theirs_tokens_per_second']:.0f} | {ratio} | {mfu} |")
    return out


def main() -> None:
    paths = [pathlib.Path(p) for p in sys.argv[1:]] or [common.OUT / "train_step.json", common.OUT / "sampling.json"]
    docs = [json.loads(p.read_text()) for p in paths if p.exists()]
    if not docs:
        sys.exit("bench/report.py: no results found; run scripts/bench")
    m, v = docs[0]["machine"], docs[0]["versions"]
    print(f"machine: {m['cpu']}, nproc {m['nproc']}, {m['date']}, "
          f"load average at start {m['load_average_at_start']}")
    print(f"peers: torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}")
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


if __name__ == "__main__":
    main()
