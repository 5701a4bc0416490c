"""Greedy decode throughput: `openrl generate` vs llama.cpp (llama-cpp-python) on SmolLM2-135M.

The model: SmolLM2-135M-Instruct (Q4_1 GGUF) imported once by `openrl model import --dtype float32`
(bench/out/models/smollm2-135m-float32), then exported by `openrl model export DIR --gguf F --type
f16` and `--type q8_0`; llama.cpp loads those files. Ours loads the imported directory with
`--dtype float32` and `--dtype bfloat16`.

Prompts: 16 English prompts tokenized once with the model's tokenizer; both sides get the same ids
(no BOS added by either). Batch 1 = prompt 0; batch 16 = all 16, one request / one decode loop.
64 new tokens per sequence, greedy, end-of-sequence ignored.
tokens/s = B·64 / seconds of one request (prefill included, model load excluded): 1 warm-up, then
the best of R timed requests.

llama.cpp side (low-level API of llama-cpp-python): llama_model_load_from_file, then two contexts
with n_threads = n_threads_batch = T, n_ctx 2048, n_batch 512, logits only where sampled. Batch 1
decodes on a plain context; batch 16 on a context with n_seq_max=16 and a unified KV cache: the 16
prompts are prefilled in one llama_batch (one seq_id each) and each step decodes one llama_batch
of 16 tokens (true batched decode, not 16 sequential runs). Greedy = argmax of
llama_get_logits_ith over the vocabulary. llama.cpp's extra weight buffers (CPU_REPACK, AMX) are
on, as by default, unless a probe in a child process dies (e.g. SIGILL from AMX tile instructions
on a VM that reports AMX without granting its state): then they are off for that file, and the
JSON says so.

Correctness, before timing: the first 16 greedy tokens of every prompt from llama.cpp (f16 export;
each prompt alone at batch 1, and all 16 in the batched context) are compared with ours (float32,
with its top-2 log-probabilities); all are printed. A row passes when the tokens are equal, or
when they first differ at a near-tie: llama.cpp's token is our second choice and our top-1/top-2
logit margin is under --tie-margin (f16 weights and activations can flip such a tie; the tokens
after a divergence continue different texts and are not compared). Any other difference stops
the benchmark.

Usage: bench/decode_llamacpp.py [--threads T] [--rounds R]
"""
from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402

MODEL = "smollm2-135m"
PROMPTS = [
    "The capital of France is", "Water boils at a temperature of", "Once upon a time, in a small village,",
    "The three primary colors are", "To make a cup of tea, first", "The largest planet in our solar system",
    "Photosynthesis is the process by which", "In computer science, a hash table is",
    "The quick brown fox jumps over", "Shakespeare wrote many plays, including",
    "A healthy breakfast usually contains", "The speed of light in a vacuum is about",
    "Machine learning models are trained by", "The Great Wall of China was built to",
    "My favourite way to spend a weekend is", "Explain in one sentence why the sky is blue:",
]


def tokenize(model_dir: pathlib.Path) -> list[list[int]]:
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return [tok.encode(p, add_special_tokens=False).ids for p in PROMPTS]


def export(a, model_dir: pathlib.Path, kind: str) -> dict:
    path = common.OUT / "models" / f"{MODEL}-{kind}.gguf"
    path.unlink(missing_ok=True)
    cmd = [str(a.binary), "model", "export", str(model_dir), "--gguf", str(path), "--type", kind,
           "--threads", str(a.threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"decode_llamacpp: {' '.join(cmd)} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return {"path": str(path), "command": " ".join(cmd), "seconds": time.perf_counter() - t0,
            "bytes": path.stat().st_size}


class LlamaCpp:
    """One GGUF loaded by llama.cpp; greedy decode of a ragged batch with the low-level API."""

    def __init__(self, path: pathlib.Path, threads: int, n_ctx: int, extra_bufts: bool = True):
        import llama_cpp
        import llama_cpp._logger
        llama_cpp._logger.set_verbose(False)
        self.lc = lc = llama_cpp
        lc.llama_backend_init()
        mp = lc.llama_model_default_params()
        mp.use_extra_bufts = extra_bufts  # weight repacking buffers (CPU_REPACK, AMX)
        self.model = lc.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        self.ctx = {}
        for seqs in (1, 16):  # batch 1: a plain context; batch 16: 16 sequences, one unified KV cache
            cp = lc.llama_context_default_params()
            cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, 512, 512
            cp.n_threads = cp.n_threads_batch = threads
            cp.n_seq_max, cp.kv_unified = seqs, seqs > 1
            self.ctx[seqs] = lc.llama_init_from_model(self.model, cp)
            if not self.ctx[seqs]:
                raise RuntimeError(f"llama_init_from_model failed (n_seq_max {seqs})")
        self.batch = lc.llama_batch_init(512, 0, 1)

    def close(self) -> None:
        self.lc.llama_batch_free(self.batch)
        for c in self.ctx.values():
            self.lc.llama_free(c)
        self.lc.llama_model_free(self.model)

    def _argmax(self, ctx, i: int) -> int:
        ptr = self.lc.llama_get_logits_ith(ctx, i)
        return int(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).argmax())

    def generate(self, prompts: list[list[int]], new_tokens: int) -> tuple[list[list[int]], float]:
        ctx = self.ctx[1 if len(prompts) == 1 else 16]
        self.lc.llama_memory_clear(self.lc.llama_get_memory(ctx), True)
        b = self.batch
        t0 = time.perf_counter()
        b.n_tokens, last = 0, []
        for s, p in enumerate(prompts):  # prefill: every prompt in one batch, logits at its end
            for j, tok in enumerate(p):
                i = b.n_tokens
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, j, 1, j == len(p) - 1
                b.seq_id[i][0] = s
                b.n_tokens += 1
            last.append(b.n_tokens - 1)
        out: list[list[int]] = [[] for _ in prompts]
        for step in range(new_tokens):
            if self.lc.llama_decode(ctx, b) != 0:
                raise RuntimeError("llama_decode failed")
            for s, i in enumerate(last):
                out[s].append(self._argmax(ctx, i))
            if step == new_tokens - 1:
                break
            b.n_tokens = len(prompts)  # next step: one token per sequence
            for s, p in enumerate(prompts):
                b.token[s], b.pos[s], b.n_seq_id[s], b.logits[s] = out[s][-1], len(p) + step, 1, True
                b.seq_id[s][0] = s
            last = list(range(len(prompts)))
        return out, time.perf_counter() - t0


def verdict(ours: list[int], top2: list, theirs: list[int], tie_margin: float) -> dict:
    """equal, near-tie (first difference where ours' top-2 are within tie_margin), or mismatch."""
    k = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), None)
    if k is None:
        return {"result": "equal"}
    (id1, lp1), (id2, lp2) = top2[k][0], top2[k][1]
    margin = lp1 - lp2
    tie = id2 == theirs[k] and margin < tie_margin
    return {"result": "near-tie" if tie else "MISMATCH", "position": k, "ours_top2": [[id1, lp1], [id2, lp2]],
            "margin": margin, "llama_cpp_token": theirs[k]}


def greedy_check(a, prompts, ours: dict, theirs: dict) -> tuple[list[dict], bool]:
    rows, ok = [], True
    for i, x in enumerate(prompts):
        o, top2 = ours["check_tokens"][i], ours["check_top2"][i]
        row = {"prompt": x, "ours": o}
        for b in (1, 16):
            t = theirs[f"check_tokens_batch{b}"][i]
            row[f"llama_cpp_batch{b}"], row[f"batch{b}"] = t, verdict(o, top2, t, a.tie_margin)
            ok = ok and row[f"batch{b}"]["result"] != "MISMATCH"
        print(f"  prompt {i:2d} ours          {o}\n"
              f"            llama.cpp b1  {row['llama_cpp_batch1']}  {row['batch1']}\n"
              f"            llama.cpp b16 {row['llama_cpp_batch16']}  {row['batch16']}", file=sys.stderr)
        rows.append(row)
    return rows, ok


def extra_bufts_work(path: pathlib.Path) -> dict:
    """Probes llama.cpp's default weight buffers on `path` in a child process (a crash stays there)."""
    proc = subprocess.run([sys.executable, __file__, "--probe", str(path)], capture_output=True, text=True,
                          timeout=600)
    return {"ok": proc.returncode == 0, "returncode": proc.returncode, "stderr_tail": proc.stderr[-300:]}


def timed(fn, rounds: int) -> dict:
    """1 warm-up + best of `rounds`; fn() -> (tokens, seconds)."""
    tokens, warm = fn()
    times = [fn()[1] for _ in range(rounds)]
    return {"warmup_seconds": warm, "seconds": times, "best_seconds": min(times), "tokens": tokens}


def run_ours(a, model_dir, prompts, dtype: str, check_tokens: int = 0) -> dict:
    cmd = [str(a.binary), "generate", "--model", str(model_dir), "--threads", str(a.threads), "--dtype", dtype]
    proc = common.JsonLinesProcess(cmd)

    def request(batch, n, logprobs=0):
        out, s = proc.request({"prompt_tokens": batch, "max_tokens": n, "temperature": 0, "ignore_eos": True,
                               "logprobs": logprobs})
        return out["samples"] if logprobs else [x["tokens"] for x in out["samples"]], s

    try:
        res = {"command": " ".join(cmd)}
        if check_tokens:
            samples = request(prompts, check_tokens, logprobs=2)[0]
            res["check_tokens"] = [x["tokens"] for x in samples]
            res["check_top2"] = [x["top_logprobs"] for x in samples]
        for b in a.batches:
            res[f"batch{b}"] = timed(lambda: request(prompts[:b], a.new_tokens), a.rounds)
    finally:
        proc.close()
    return res


def run_theirs(a, gguf: pathlib.Path, prompts, n_ctx: int, check_tokens: int = 0) -> dict:
    import llama_cpp
    probe = extra_bufts_work(gguf)
    m = LlamaCpp(gguf, a.threads, n_ctx, extra_bufts=probe["ok"])
    try:
        res = {"peer": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, {gguf.name}"
                       + ("" if probe["ok"] else f" (extra buffer types off: probe exit {probe['returncode']})"),
               "extra_buffer_types": probe["ok"], "probe": probe}
        if check_tokens:
            res["check_tokens_batch1"] = [m.generate([x], check_tokens)[0][0] for x in prompts]
            res["check_tokens_batch16"] = m.generate(prompts, check_tokens)[0]
        for b in a.batches:
            res[f"batch{b}"] = timed(lambda: m.generate(prompts[:b], a.new_tokens), a.rounds)
    finally:
        m.close()
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", type=pathlib.Path, default=common.default_binary())
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=2, help="timed requests per side after the warm-up")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--check-tokens", type=int, default=16, help="greedy tokens compared before timing")
    p.add_argument("--tie-margin", type=float, default=0.05,
                   help="a first difference counts as a near-tie under this top-1/top-2 logit margin")
    p.add_argument("--ours-dtypes", default="float32,bfloat16")
    p.add_argument("--types", default="f16,q8_0", help="GGUF export types llama.cpp runs")
    p.add_argument("--out", default="decode_llamacpp")
    p.add_argument("--probe", type=pathlib.Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.probe:  # child process of extra_bufts_work: load with defaults, decode a few tokens
        m = LlamaCpp(a.probe, 1, 256)
        m.generate([[1, 2, 3, 4, 5]] * 2, 2)
        m.generate([[1, 2, 3, 4, 5]], 2)
        return m.close()
    a.batches = [1, 16]
    common.wait_for_binary(a.binary)
    info = {"benchmark": "decode_llamacpp", "machine": common.machine(), "versions": common.versions("llama_cpp"),
            "threads": a.threads, "device": "cpu", "dtype": a.ours_dtypes, "argv": sys.argv}
    model_dir = common.imported_model(a.binary, MODEL)
    prompts = tokenize(model_dir)
    n_ctx = 2048 if sum(len(x) for x in prompts) + 16 * a.new_tokens <= 2048 else 4096
    exports = {k: export(a, model_dir, k) for k in a.types.split(",")}
    ours, theirs = {}, {}
    for i, dtype in enumerate(a.ours_dtypes.split(",")):
        ours[dtype] = run_ours(a, model_dir, prompts, dtype, a.check_tokens if i == 0 else 0)
        print(f"decode_llamacpp: ours {dtype} done", file=sys.stderr, flush=True)
        if i == 0:  # the correctness gate against llama.cpp f16, before any llama.cpp timing
            first = next(iter(exports))
            theirs[first] = run_theirs(a, pathlib.Path(exports[first]["path"]), prompts, n_ctx, a.check_tokens)
            rows, ok = greedy_check(a, prompts, ours[dtype], theirs[first])
            counts = {f"batch{b}": {v: sum(r[f"batch{b}"]["result"] == v for r in rows)
                                    for v in ("equal", "near-tie", "MISMATCH")} for b in (1, 16)}
            info["greedy_check"] = {"ours_dtype": dtype, "llama_cpp_type": first, "tokens": a.check_tokens,
                                    "tie_margin": a.tie_margin, "counts": counts, "rows": rows}
            print(f"decode_llamacpp: greedy check ours {dtype} vs llama.cpp {first}: {counts}", file=sys.stderr)
            if not ok:
                common.write_result(a.out, info)
                sys.exit(f"decode_llamacpp: greedy tokens of ours ({dtype}) and llama.cpp ({first}) differ "
                         "beyond near-ties; see the rows above")
    for kind in a.types.split(","):
        if kind not in theirs:
            theirs[kind] = run_theirs(a, pathlib.Path(exports[kind]["path"]), prompts, n_ctx)
        print(f"decode_llamacpp: llama.cpp {kind} done", file=sys.stderr, flush=True)
    results = []
    for b in a.batches:
        tokens = b * a.new_tokens
        for dtype, o in ours.items():
            for kind, t in theirs.items():
                ot, tt = tokens / o[f"batch{b}"]["best_seconds"], tokens / t[f"batch{b}"]["best_seconds"]
                results.append({"model": MODEL, "batch": b, "new_tokens": a.new_tokens, "ours_dtype": dtype,
                                "theirs_type": kind, "command": o["command"], "peer": t["peer"],
                                "ours_tokens_per_second": ot, "theirs_tokens_per_second": tt, "ratio": ot / tt})
                print(f"decode_llamacpp: batch {b}: ours {dtype} {ot:.0f} tok/s, llama.cpp {kind} {tt:.0f} tok/s "
                      f"(ratio {ot / tt:.2f})", file=sys.stderr)
    ref = next(iter(ours))  # how many of the 64-token rows each run shares with ours in the first dtype
    for side in (ours, theirs):
        for v in side.values():
            for b in a.batches:
                v[f"batch{b}"][f"rows_equal_to_ours_{ref}"] = sum(
                    x == y for x, y in zip(v[f"batch{b}"]["tokens"], ours[ref][f"batch{b}"]["tokens"]))
    info.update({"prompt_lengths": [len(x) for x in prompts], "n_ctx": n_ctx, "exports": exports,
                 "results": results, "ours": ours, "theirs": theirs})
    info["machine"]["load_average_at_end"] = common.load_average()
    path = common.write_result(a.out, info)
    print(f"decode_llamacpp: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
