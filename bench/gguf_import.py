"""GGUF import time: `openrl model import` vs transformers `from_pretrained(..., gguf_file=...)`.

For each GGUF model (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M) and each dtype (bfloat16,
float32):
  ours:   wall seconds of one `openrl model import FILE --out DIR --dtype D` process (a fresh DIR
          each time): parse, dequantize, rebuild the tokenizer, write safetensors + config +
          tokenizer files to disk. Process start-up and library loading are included.
  theirs: seconds of `AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=D)` plus
          `AutoTokenizer.from_pretrained(dir, gguf_file=name)` in this process (in memory; nothing
          written). Model and tokenizer are timed separately and summed.
The peer's lazily imported modules (transformers' GGUF loader and tokenizer converter, gguf-py)
are imported before any timing; then R alternating rounds, best of each side.
speedup (the JSON's "ratio") = theirs_seconds / ours_seconds.

Both sides must produce the same weights: after the last round every tensor the two share by
name is compared (max |ours - theirs|, expected 0: both dequantize the same blocks).

Usage: bench/gguf_import.py [--threads T] [--rounds R] [--models smollm2-135m,gemma3-270m]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader has a plain tqdm bar; read at import

import torch  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402


def run_ours(a, gguf: pathlib.Path, dtype: str, out_dir: pathlib.Path) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [str(a.binary), "model", "import", str(gguf), "--out", str(out_dir), "--dtype", dtype]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"command": " ".join(cmd), "seconds": wall, "reported_seconds": report.get("seconds"),
            "parameters": report.get("parameters"), "model_type": report.get("model_type")}


def run_theirs(a, gguf: pathlib.Path, dtype: str, keep: bool = False) -> tuple[dict, object]:
    import transformers
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                              dtype=getattr(torch, dtype))
    t1 = time.perf_counter()
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    t2 = time.perf_counter()
    out = {"peer": f"transformers {transformers.__version__} {type(model).__name__} + "
                   f"{type(tok).__name__} (gguf {gguf_version()})",
           "model_seconds": t1 - t0, "tokenizer_seconds": t2 - t1, "seconds": t2 - t0,
           "vocab": len(tok)}
    if not keep:
        del model, tok
        gc.collect()
        return out, None
    return out, model


def gguf_version() -> str:
    from importlib.metadata import version
    return version("gguf")


def same_weights(ours_dir: pathlib.Path, model) -> dict:
    """Max |ours - theirs| over the tensors both have by name (HF names on both sides)."""
    from safetensors.torch import load_file
    ours = {}
    for f in sorted(ours_dir.glob("*.safetensors")):
        ours.update(load_file(f))
    theirs = model.state_dict()
    common_names = sorted(set(ours) & set(theirs))
    worst, worst_name = 0.0, None
    for n in common_names:
        if ours[n].shape != theirs[n].shape:
            return {"tensors_compared": len(common_names), "shape_mismatch": n,
                    "ours_shape": list(ours[n].shape), "theirs_shape": list(theirs[n].shape)}
        d = (ours[n].float() - theirs[n].float()).abs().max().item()
        if d > worst:
            worst, worst_name = d, n
    return {"tensors_ours": len(ours), "tensors_theirs": len(theirs), "tensors_compared": len(common_names),
            "only_ours": sorted(set(ours) - set(theirs))[:8], "only_theirs": sorted(set(theirs) - set(ours))[:8],
            "max_abs_diff": worst, "max_abs_diff_tensor": worst_name}


def bench_one(a, name: str, dtype: str) -> dict:
    gguf = common.GGUF_MODELS[name]
    out_dir = common.OUT / "tmp" / f"import-{name}-{dtype}"
    rounds = []
    model = None
    for r in range(a.rounds):
        last = r == a.rounds - 1
        ours = run_ours(a, gguf, dtype, out_dir)
        theirs, model = run_theirs(a, gguf, dtype, keep=last)
        rounds.append({"ours": ours, "theirs": theirs, "load_average": common.load_average()})
        print(f"  {name} {dtype} round {r + 1}: ours {ours['seconds']:.2f} s, theirs {theirs['seconds']:.2f} s "
              f"(model {theirs['model_seconds']:.2f} + tokenizer {theirs['tokenizer_seconds']:.2f})",
              file=sys.stderr, flush=True)
    check = same_weights(out_dir, model)
    del model
    gc.collect()
    shutil.rmtree(out_dir, ignore_errors=True)
    best_ours = min(x["ours"]["seconds"] for x in rounds)
    best_theirs = min(x["theirs"]["seconds"] for x in rounds)
    return {"model": name, "gguf": gguf.name, "gguf_bytes": gguf.stat().st_size, "dtype": dtype,
            "parameters": rounds[0]["ours"]["parameters"], "command": rounds[0]["ours"]["command"],
            "peer": rounds[0]["theirs"]["peer"], "ours_seconds": best_ours, "theirs_seconds": best_theirs,
            "ratio": best_theirs / best_ours, "same_weights": check, "rounds": rounds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", type=pathlib.Path, default=common.default_binary())
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=1, help="alternate ours/theirs R times, keep the best of each")
    p.add_argument("--models", default=",".join(common.GGUF_MODELS))
    p.add_argument("--dtypes", default="bfloat16,float32")
    p.add_argument("--out", default="gguf_import")
    a = p.parse_args()
    common.wait_for_binary(a.binary)
    info = {"benchmark": "gguf_import", "machine": common.machine(), "versions": common.versions(),
            "threads": a.threads, "device": "cpu", "dtype": a.dtypes, "argv": sys.argv}
    info["versions"]["gguf"] = gguf_version()
    import gguf  # noqa: F401  (warm the peer's lazy imports: not part of any load)
    import transformers.integrations.ggml  # noqa: F401
    import transformers.modeling_gguf_pytorch_utils  # noqa: F401
    results = []
    for name in a.models.split(","):
        for dtype in a.dtypes.split(","):
            r = bench_one(a, name, dtype)
            results.append(r)
            print(f"gguf_import: {name} {dtype}: ours {r['ours_seconds']:.2f} s, theirs {r['theirs_seconds']:.2f} s, "
                  f"speedup {r['ratio']:.2f}x, weights max|diff| {r['same_weights'].get('max_abs_diff')} "
                  f"over {r['same_weights']['tensors_compared']} tensors", file=sys.stderr, flush=True)
    info["results"] = results
    info["machine"]["load_average_at_end"] = common.load_average()
    path = common.write_result(a.out, info)
    print(f"gguf_import: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
