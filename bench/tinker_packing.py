"""Packing concurrent training runs into one engine clock cycle, through the Tinker API.

Starts a real `openrl serve` on SmolLM2-135M-Instruct (from its GGUF, as tests/tinker_server.py
does) and drives it with the official `tinker` SDK. Two measurements:

1. RL clients (issue target: 3 clients reach >= 2.5x the steps/s of 1, with the engine busy >= 90%
   of the time). 1, 2 and 3 client processes, each with its own ServiceClient and LoRA training run
   (rank 8), loop: save_weights_and_get_sampling_client, sample a group (4 samples, max_tokens 8),
   "score" the group by sleeping as long as one server step takes (the mean step wall time of one
   client alone, measured first in a calibration phase), then forward_backward(importance_sampling)
   + optim_step. Warm-up steps, then a fixed number of measured steps per client, all clients
   starting together. Reports steps/s, the ratio against 1 client, the engine's busy fraction
   (delta openrl_engine_busy_seconds_total / wall over the measured window) and the mean number of
   runs per packed forward/backward pass (openrl_engine_runs_per_pass).
2. Packed against run-by-run: N training runs each submit one forward_backward of the same size.
   Packed: all N queued while the engine is busy with a "blocker" pass of another run, so the next
   clock cycle packs them into one pass (checked with the cycle counter and the runs-per-pass
   histogram). Sequential: the same N requests submitted one after another, each awaited. Tokens/s
   both ways from the engine's busy time (and, for reference, the client's wall time), N = 2, 4.

Writes bench/out/tinker_packing.json. Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TINKER_TELEMETRY", "0")

from tinker_server import SMOLLM2_NAME, Server, temporary_server  # noqa: E402

PROMPT = "Is water wet? Answer with one word."
common = None  # bench/common.py (torch + transformers), imported by main() only: the client processes skip it


# ---------------------------------------------------------------------------------------------
# metrics


def engine_metrics(server: Server) -> dict:
    m = server.metrics()
    return {"busy": m.get("openrl_engine_busy_seconds_total", 0.0),
            "cycles": m.get("openrl_engine_cycles_total", 0.0),
            "passes": m.get("openrl_engine_runs_per_pass_count", 0.0),
            "runs_in_passes": m.get("openrl_engine_runs_per_pass_sum", 0.0),
            "buckets": {k.split('le="', 1)[1].rstrip('"}'): v for k, v in m.items()
                        if k.startswith("openrl_engine_runs_per_pass_bucket")},
            "work": {k.split('work="', 1)[1].rstrip('"}'): v for k, v in m.items()
                     if k.startswith("openrl_engine_work_seconds_total{")}}


def delta(a: dict, b: dict) -> dict:
    return {"busy_s": b["busy"] - a["busy"], "cycles": int(b["cycles"] - a["cycles"]),
            "passes": int(b["passes"] - a["passes"]), "runs_in_passes": int(b["runs_in_passes"] - a["runs_in_passes"]),
            "buckets": {k: int(b["buckets"][k] - a["buckets"].get(k, 0)) for k in b["buckets"]},
            "work_s": {k: b["work"][k] - a["work"].get(k, 0.0) for k in b["work"]}}


def wait_cycles(server: Server, cycles: float, timeout: float = 30.0) -> dict:
    """Engine metrics once the cycle counter reaches `cycles` (the busy time is added after the
    cycle's results are handed out, so a client can see its result a moment before)."""
    deadline = time.monotonic() + timeout
    while True:
        m = engine_metrics(server)
        if m["cycles"] >= cycles or time.monotonic() > deadline:
            # The scrape is not atomic: busy time may have been read just before the cycle ended.
            # The busy counter moves before the cycle counter, so a scrape started now has both.
            return engine_metrics(server)
        time.sleep(0.002)


# ---------------------------------------------------------------------------------------------
# 1. RL clients


def make_rl_data(types, prompt: list[int], sequences, step: int):
    """Importance-sampling data from a sampled group: a toy reward (share of even token ids, so the
    group's rewards differ), group-relative advantages; every sample is kept so the work per step
    stays fixed."""
    rewards = [sum(1 for t in s.tokens if t % 2 == 0) / max(1, len(s.tokens)) for s in sequences]
    mean = sum(rewards) / len(rewards)
    data, tokens = [], 0
    n = len(prompt) - 1
    for s, r in zip(sequences, rewards):
        full = prompt + list(s.tokens)
        tokens += len(full) - 1
        data.append(types.Datum(model_input=types.ModelInput.from_ints(full[:-1]),
                                loss_fn_inputs={"target_tokens": full[1:],
                                                "logprobs": [0.0] * n + list(s.logprobs),
                                                "advantages": [0.0] * n + [r - mean] * len(s.tokens)}))
    return data, tokens


def rl_client(index: int, url: str, key: str, prompt: list[int], cfg: dict, score_s: float, barrier, results) -> None:
    """One RL client process: warm-up steps, the barrier, then the measured steps."""
    os.environ.setdefault("TINKER_TELEMETRY", "0")
    try:
        import tinker
        from tinker import types

        svc = tinker.ServiceClient(base_url=url, api_key=key)
        tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=cfg["rank"], seed=100 + index).result()
        adam = types.AdamParams(learning_rate=1e-4)
        params = dict(max_tokens=cfg["max_tokens"], temperature=1.0)

        def step(i: int) -> dict:
            t0 = time.monotonic()
            sampler = tc.save_weights_and_get_sampling_client().result()
            t1 = time.monotonic()
            res = sampler.sample(prompt=types.ModelInput.from_ints(prompt), num_samples=cfg["group"],
                                 sampling_params=types.SamplingParams(**params, seed=1000 * index + i)).result()
            t2 = time.monotonic()
            time.sleep(score_s)  # client-side reward scoring
            data, tokens = make_rl_data(types, prompt, res.sequences, i)
            t3 = time.monotonic()
            fb = tc.forward_backward(data, "importance_sampling")
            opt = tc.optim_step(adam)
            fb.result()
            opt.result()
            t4 = time.monotonic()
            return {"save_s": t1 - t0, "sample_s": t2 - t1, "score_s": t3 - t2, "train_s": t4 - t3,
                    "server_s": (t2 - t0) + (t4 - t3), "step_s": t4 - t0, "train_tokens": tokens,
                    "sampled_tokens": sum(len(s.tokens) for s in res.sequences), "end": t4}

        for i in range(cfg["warmup"]):
            step(i)
        barrier.wait()
        start = time.monotonic()
        steps = [step(cfg["warmup"] + i) for i in range(cfg["steps"])]
        results.put({"index": index, "start": start, "end": time.monotonic(), "steps": steps})
    except BaseException as e:  # noqa: BLE001 — reported to the parent, which fails the run
        results.put({"index": index, "error": repr(e)})
        try:
            barrier.abort()
        except Exception:  # noqa: BLE001
            pass


def run_clients(server: Server, key: str, prompt: list[int], n: int, cfg: dict, score_s: float) -> dict:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=rl_client, args=(i, server.url, key, prompt, cfg, score_s, barrier, results))
             for i in range(n)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=600)
    except Exception:  # noqa: BLE001
        pass
    t0 = time.monotonic()
    m0 = engine_metrics(server)
    load0 = common.load_average()
    out = [results.get(timeout=900) for _ in procs]
    m1 = engine_metrics(server)
    for p in procs:
        p.join(timeout=60)
    errors = [o["error"] for o in out if "error" in o]
    if errors:
        sys.exit(f"bench: RL client failed: {errors}")
    out.sort(key=lambda o: o["index"])
    end = max(o["end"] for o in out)
    wall = end - t0
    d = delta(m0, m1)
    steps = [s for o in out for s in o["steps"]]
    return {"clients": n, "score_s": score_s, "wall_s": wall, "steps": len(steps),
            "steps_per_s": len(steps) / wall, "engine": d, "engine_busy_fraction": d["busy_s"] / wall,
            "mean_runs_per_pass": d["runs_in_passes"] / d["passes"] if d["passes"] else 0.0,
            "engine_s_per_step": d["busy_s"] / len(steps),
            "mean_step_s": statistics.mean(s["step_s"] for s in steps),
            "mean_server_s": statistics.mean(s["server_s"] for s in steps),
            "mean_sample_s": statistics.mean(s["save_s"] + s["sample_s"] for s in steps),
            "mean_train_s": statistics.mean(s["train_s"] for s in steps),
            "load_average": [load0, common.load_average()],
            "per_client": out}


# ---------------------------------------------------------------------------------------------
# 2. packed against run-by-run


def fixed_data(types, datums: int, tokens: int, salt: int):
    """`datums` cross-entropy data of `tokens` input tokens each (ids in the ordinary vocabulary)."""
    out = []
    for d in range(datums):
        ids = [1000 + (salt * 7919 + d * 104729 + t * 31) % 30000 for t in range(tokens + 1)]
        out.append(types.Datum(model_input=types.ModelInput.from_ints(ids[:-1]),
                               loss_fn_inputs={"target_tokens": ids[1:]}))
    return out


def packed_round(server: Server, blocker, clients, data) -> dict:
    """The blocker's pass keeps the engine busy while the N requests are queued; the next cycle
    packs them. Engine time of that cycle from the busy counter between the two cycle ends."""
    n = len(clients)
    m0 = engine_metrics(server)
    fut = blocker.forward_backward(data[0], "cross_entropy")
    time.sleep(0.1)  # the engine has taken the blocker alone
    futs = [tc.forward_backward(d, "cross_entropy") for tc, d in zip(clients, data)]
    fut.result()
    t1 = time.monotonic()
    m1 = wait_cycles(server, m0["cycles"] + 1)
    for f in futs:
        f.result()
    t2 = time.monotonic()
    m2 = wait_cycles(server, m0["cycles"] + 2)
    d_all, d_packed = delta(m0, m2), delta(m1, m2)
    # Runs per pass are counted as a cycle starts: over both cycles, the blocker's pass of 1 and one of n.
    packed_ok = d_all["cycles"] == 2 and d_all["passes"] == 2 and d_all["runs_in_passes"] == n + 1
    return {"engine_s": d_packed["busy_s"], "wall_s": t2 - t1, "packed_ok": packed_ok,
            "cycles": d_all["cycles"], "passes": d_all["passes"], "runs_in_passes": d_all["runs_in_passes"]}


def sequential_round(server: Server, clients, data) -> dict:
    m0 = engine_metrics(server)
    t0 = time.monotonic()
    per = []
    for tc, d in zip(clients, data):
        t = time.monotonic()
        tc.forward_backward(d, "cross_entropy").result()
        per.append(time.monotonic() - t)
    wall = time.monotonic() - t0
    m1 = wait_cycles(server, m0["cycles"] + len(clients))
    d = delta(m0, m1)
    return {"engine_s": d["busy_s"], "wall_s": wall, "per_request_wall_s": per, "cycles": d["cycles"],
            "passes": d["passes"], "runs_in_passes": d["runs_in_passes"]}


def packing_vs_sequential(server: Server, svc, ns: list[int], datums: int, tokens: int, rounds: int, rank: int) -> list:
    from tinker import types

    blocker = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=rank, seed=1).result()
    clients = [svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=rank, seed=10 + i).result()
               for i in range(max(ns))]
    per_request_tokens = datums * tokens
    out = []
    for n in ns:
        data = [fixed_data(types, datums, tokens, i) for i in range(n)]
        packed_round(server, blocker, clients[:n], data)  # warm-up: these adapters, this packed shape
        rows = []
        for r in range(rounds):  # alternate the order
            if r % 2 == 0:
                p = packed_round(server, blocker, clients[:n], data)
                s = sequential_round(server, clients[:n], data)
            else:
                s = sequential_round(server, clients[:n], data)
                p = packed_round(server, blocker, clients[:n], data)
            rows.append({"packed": p, "sequential": s, "load_average": common.load_average()})
        work = n * per_request_tokens
        ok = [row for row in rows if row["packed"]["packed_ok"]]
        best_p = min(row["packed"]["engine_s"] for row in ok) if ok else float("nan")
        best_s = min(row["sequential"]["engine_s"] for row in rows)
        best_pw = min(row["packed"]["wall_s"] for row in ok) if ok else float("nan")
        best_sw = min(row["sequential"]["wall_s"] for row in rows)
        out.append({"n": n, "tokens_per_request": per_request_tokens, "datums": datums, "tokens_per_datum": tokens,
                    "rounds": rows, "packed_rounds_ok": len(ok),
                    "packed_tok_s": work / best_p, "sequential_tok_s": work / best_s,
                    "ratio": best_s / best_p,
                    "packed_wall_tok_s": work / best_pw, "sequential_wall_tok_s": work / best_sw,
                    "wall_ratio": best_sw / best_pw})
    return out


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the server (OMP_NUM_THREADS; 0: nproc)")
    ap.add_argument("--parts", default="rl,pack", help="rl, pack or both (default)")
    ap.add_argument("--clients", default="1,2,3")
    ap.add_argument("--warmup", type=int, default=1, help="RL steps per client before the measured window")
    ap.add_argument("--steps", type=int, default=5, help="measured RL steps per client")
    ap.add_argument("--calib-steps", type=int, default=2,
                    help="1-client steps (after warm-up) that set the scoring time")
    ap.add_argument("--score-seconds", type=float, default=None, help="scoring time (default: calibrated)")
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--pack-n", default="2,4")
    ap.add_argument("--pack-datums", type=int, default=4)
    ap.add_argument("--pack-tokens", type=int, default=40, help="input tokens per datum (an RL step: 4 x ~45)")
    ap.add_argument("--pack-rounds", type=int, default=2)
    ap.add_argument("--out", default="tinker_packing")
    args = ap.parse_args()
    global common
    import common as common_module
    common = common_module

    binary = common.default_binary()
    common.wait_for_binary(binary)
    threads = args.threads or os.cpu_count()
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the server's torch thread pool (inherited)
    parts = set(args.parts.replace(",", " ").split())
    result = {"benchmark": "tinker_packing", "machine": common.machine(), "threads": threads,
              "binary": str(binary), "model": SMOLLM2_NAME, "config": vars(args)}

    with temporary_server(binary, "openrl-bench-packing-") as server:
        key = server.key
        import tinker

        svc = tinker.ServiceClient(base_url=server.url, api_key=key)
        tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=args.rank).result()
        tok = tc.get_tokenizer()
        text = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                       tokenize=False)
        prompt = tok(text, add_special_tokens=False).input_ids
        result["prompt_tokens"] = len(prompt)

        if "rl" in parts:
            cfg = {"rank": args.rank, "group": args.group, "max_tokens": args.max_tokens, "warmup": args.warmup,
                   "steps": args.steps}
            score = args.score_seconds
            if score is None:
                calib = run_clients(server, key, prompt, 1, {**cfg, "steps": args.calib_steps}, 0.0)
                score = calib["mean_step_s"]
                result["calibration"] = calib
                print(f"calibration: one client alone, mean step {score:.3f} s (server side), "
                      f"engine busy {calib['engine_busy_fraction']:.0%}")
            configs = []
            for n in [int(x) for x in args.clients.split(",")]:
                r = run_clients(server, key, prompt, n, cfg, score)
                configs.append(r)
                print(f"  {n} client(s): {r['steps_per_s']:.3f} steps/s, engine busy {r['engine_busy_fraction']:.0%}, "
                      f"{r['mean_runs_per_pass']:.2f} runs/pass, load {r['load_average'][1][0]:.2f}")
            base = next((c for c in configs if c["clients"] == 1), configs[0])
            for c in configs:
                c["ratio_vs_1"] = c["steps_per_s"] / base["steps_per_s"]
            result["rl"] = {"score_s": score, "configs": configs}

        if "pack" in parts:
            result["packing"] = packing_vs_sequential(server, svc, [int(x) for x in args.pack_n.split(",")],
                                                      args.pack_datums, args.pack_tokens, args.pack_rounds, args.rank)
    result["machine"]["load_average_at_end"] = common.load_average()
    path = common.write_result(args.out, result)

    load = result["machine"]
    print(f"\nTinker packing — SmolLM2-135M, LoRA r{args.rank}, server threads {threads}, "
          f"load {load['load_average_at_start'][0]:.2f} -> {load['load_average_at_end'][0]:.2f}")
    if "rl" in result:
        rl = result["rl"]
        print(f"\nRL clients: group {args.group} x {args.max_tokens} tokens, scoring {rl['score_s']:.3f} s per step, "
              f"{args.warmup} warm-up + {args.steps} measured steps per client "
              "(target: 3 clients >= 2.5x the steps/s of 1, engine busy >= 90%)")
        print("| clients | steps/s | vs 1 client | engine busy | runs/pass | engine s/step | client step s "
              "| save+sample s | fwd/bwd+optim s |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in rl["configs"]:
            print(f"| {c['clients']} | {c['steps_per_s']:.3f} | **{c['ratio_vs_1']:.2f}x** | "
                  f"**{c['engine_busy_fraction']:.0%}** | {c['mean_runs_per_pass']:.2f} | "
                  f"{c['engine_s_per_step']:.3f} | {c['mean_step_s']:.3f} | {c['mean_sample_s']:.3f} | "
                  f"{c['mean_train_s']:.3f} |")
        kinds = sorted({k for c in rl["configs"] for k in c["engine"]["work_s"]})
        print("\nEngine seconds per RL step, by kind of work (openrl_engine_work_seconds_total):")
        print("| clients | " + " | ".join(kinds) + " |")
        print("|---:|" + "---:|" * len(kinds))
        for c in rl["configs"]:
            w = c["engine"]["work_s"]
            print(f"| {c['clients']} | " + " | ".join(f"{w.get(k, 0.0) / c['steps']:.3f}" for k in kinds) + " |")
    if "packing" in result:
        p0 = result["packing"][0]
        print(f"\nPacked clock cycle vs run-by-run: each run one forward_backward of {p0['datums']} x "
              f"{p0['tokens_per_datum']} tokens; best of {args.pack_rounds} rounds "
              "(engine busy time; client wall time in brackets)")
        print("| runs | packed tok/s | run-by-run tok/s | packed / run-by-run | packed rounds ok |")
        print("|---:|---:|---:|---:|---:|")
        for p in result["packing"]:
            print(f"| {p['n']} | {p['packed_tok_s']:.0f} ({p['packed_wall_tok_s']:.0f}) | {p['sequential_tok_s']:.0f} "
                  f"({p['sequential_wall_tok_s']:.0f}) | **{p['ratio']:.2f}x** ({p['wall_ratio']:.2f}x) | "
                  f"{p['packed_rounds_ok']}/{len(p['rounds'])} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
