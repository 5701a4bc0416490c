"""API overhead per request of the Tinker server, against the engine time alone.

Starts a real `openrl serve` on SmolLM2-135M-Instruct (from its GGUF, as tests/tinker_server.py
does) and sends many minimal `forward` requests (1 datum of 8 tokens, cross_entropy, LoRA r8), one
at a time, two ways, interleaved request by request so both see the same machine:

- sdk: the official `tinker` SDK, `training_client.forward([datum], "cross_entropy").result()`
  (submit + result), end to end;
- raw: httpx on one keep-alive connection: POST /api/v1/forward_backward with a JSON body
  (forward_only) then POST /api/v1/retrieve_future (the server's long poll), end to end — the
  server's own cost without the SDK's.

Engine time per request: the delta of openrl_engine_busy_seconds_total across each request (each
request is its own clock cycle; the counter is read once the cycle counter has moved on).
Overhead = end to end - engine time, per request. Also reported: the server's handler time of
POST /api/v1/forward_backward (decode, checks, queueing; from openrl_http_request_duration_seconds).

Writes bench/out/tinker_overhead.json. Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TINKER_TELEMETRY", "0")

import common  # noqa: E402
from tinker_server import SMOLLM2_NAME, Server, temporary_server  # noqa: E402

FB_ROUTE = 'method="POST",route="/api/v1/forward_backward"'


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def snapshot(server: Server) -> dict:
    m = server.metrics()
    return {"busy": m.get("openrl_engine_busy_seconds_total", 0.0),
            "cycles": m.get("openrl_engine_cycles_total", 0.0),
            "waits": m.get("openrl_engine_gather_waits_total", 0.0),
            "handler_sum": m.get(f"openrl_http_request_duration_seconds_sum{{{FB_ROUTE}}}", 0.0),
            "handler_count": m.get(f"openrl_http_request_duration_seconds_count{{{FB_ROUTE}}}", 0.0)}


def after_cycle(server: Server, cycles: float, timeout: float = 30.0) -> dict:
    """Metrics once the engine's cycle counter reaches `cycles` (the busy time is added just after
    the cycle's results are handed out)."""
    deadline = time.monotonic() + timeout
    while True:
        m = snapshot(server)
        if m["cycles"] >= cycles or time.monotonic() > deadline:
            # The scrape is not atomic: busy time may have been read just before the cycle ended.
            # The busy counter moves before the cycle counter, so a scrape started now has both.
            return snapshot(server)
        time.sleep(0.0005)


def summary(e2e: list[float], engine: list[float], handler: list[float]) -> dict:
    over = [a - b for a, b in zip(e2e, engine)]
    ms = lambda x: 1000.0 * x  # noqa: E731
    return {"requests": len(e2e),
            "e2e_p50_ms": ms(percentile(e2e, 50)), "e2e_p99_ms": ms(percentile(e2e, 99)),
            "e2e_mean_ms": ms(statistics.mean(e2e)),
            "engine_mean_ms": ms(statistics.mean(engine)), "engine_p50_ms": ms(percentile(engine, 50)),
            "engine_p99_ms": ms(percentile(engine, 99)),
            "overhead_p50_ms": ms(percentile(over, 50)), "overhead_p99_ms": ms(percentile(over, 99)),
            "overhead_mean_ms": ms(statistics.mean(over)),
            "handler_mean_ms": ms(statistics.mean(handler)) if handler else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the server (OMP_NUM_THREADS; 0: nproc)")
    ap.add_argument("--requests", type=int, default=200, help="measured requests per way")
    ap.add_argument("--warmup", type=int, default=5, help="unmeasured requests per way first")
    ap.add_argument("--tokens", type=int, default=8, help="input tokens of the one datum")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--out", default="tinker_overhead")
    args = ap.parse_args()

    binary = common.default_binary()
    common.wait_for_binary(binary)
    threads = args.threads or os.cpu_count()
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the server's torch thread pool (inherited)
    result = {"benchmark": "tinker_overhead", "machine": common.machine(), "threads": threads,
              "binary": str(binary), "model": SMOLLM2_NAME, "config": vars(args)}

    with temporary_server(binary, "openrl-bench-overhead-") as server:
        key = server.key
        import httpx
        import tinker
        from tinker import types

        result["versions"] = {"tinker": tinker.__version__, "httpx": httpx.__version__}
        svc = tinker.ServiceClient(base_url=server.url, api_key=key)
        # One training run for both ways (the raw requests are unnumbered, seq_id 0): one client, as the
        # engine sees it, so no cycle waits the gather window for another client's request.
        tc_sdk = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=args.rank, seed=1).result()
        ids = [1000 + 37 * t for t in range(args.tokens + 1)]
        datum = types.Datum(model_input=types.ModelInput.from_ints(ids[:-1]), loss_fn_inputs={"target_tokens": ids[1:]})
        body = {"model_id": tc_sdk.model_id, "seq_id": 0, "forward_backward_input": {
            "loss_fn": "cross_entropy", "forward_only": True,
            "data": [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": ids[:-1]}]},
                      "loss_fn_inputs": {"target_tokens": {"data": ids[1:], "dtype": "int64"}}}]}}
        http = httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60)

        def sdk_once() -> dict:
            t0 = time.perf_counter()
            tc_sdk.forward([datum], "cross_entropy").result()
            return {"e2e": time.perf_counter() - t0}

        def raw_once() -> dict:
            t0 = time.perf_counter()
            r = http.post("/api/v1/forward_backward", json=body)
            r.raise_for_status()
            fut = r.json()["request_id"]
            t1 = time.perf_counter()
            while True:
                r = http.post("/api/v1/retrieve_future", json={"request_id": fut})
                if r.status_code != 408:
                    break
            t2 = time.perf_counter()
            if r.status_code != 200 or "protobuf" not in r.headers.get("content-type", ""):
                raise RuntimeError(f"retrieve_future: {r.status_code} {r.text[:500]}")
            return {"e2e": t2 - t0, "submit": t1 - t0, "retrieve": t2 - t1}

        ways = {"sdk": sdk_once, "raw": raw_once}
        raw_rows: dict[str, list] = {w: [] for w in ways}
        for i in range(args.warmup + args.requests):
            for way, once in ways.items():
                m0 = snapshot(server)
                row = once()
                m1 = after_cycle(server, m0["cycles"] + 1)
                row.update(engine=m1["busy"] - m0["busy"], cycles=int(m1["cycles"] - m0["cycles"]),
                           gather_waits=int(m1["waits"] - m0["waits"]),
                           handler=(m1["handler_sum"] - m0["handler_sum"]) if m1["handler_count"] > m0["handler_count"]
                           else None)
                if i >= args.warmup:
                    raw_rows[way].append(row)
        http.close()
        for way, rows in raw_rows.items():
            bad = sum(1 for r in rows if r["cycles"] != 1)
            result[way] = summary([r["e2e"] for r in rows], [r["engine"] for r in rows],
                                  [r["handler"] for r in rows if r["handler"] is not None])
            result[way]["requests_not_one_cycle"] = bad
            result[way]["gather_waits"] = sum(r["gather_waits"] for r in rows)
            result[way]["per_request"] = rows
        raw = raw_rows["raw"]
        result["raw"]["submit_p50_ms"] = 1000 * percentile([r["submit"] for r in raw], 50)
        result["raw"]["retrieve_p50_ms"] = 1000 * percentile([r["retrieve"] for r in raw], 50)
    result["machine"]["load_average_at_end"] = common.load_average()
    path = common.write_result(args.out, result)

    load = result["machine"]
    print(f"\nTinker API overhead — minimal forward (1 datum x {args.tokens} tokens, cross_entropy, "
          f"LoRA r{args.rank}), {args.requests} requests per way, one at a time, interleaved; server threads "
          f"{threads}, load {load['load_average_at_start'][0]:.2f} -> {load['load_average_at_end'][0]:.2f}")
    print("| client | end-to-end p50 ms | end-to-end p99 ms | engine mean ms | engine p50 ms | overhead p50 ms "
          "| overhead p99 ms | server handler mean ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for way, label in (("sdk", "tinker SDK forward().result()"),
                       ("raw", "httpx POST forward_backward + retrieve_future")):
        r = result[way]
        handler = f"{r['handler_mean_ms']:.2f}" if r["handler_mean_ms"] is not None else "-"
        print(f"| {label} | {r['e2e_p50_ms']:.1f} | {r['e2e_p99_ms']:.1f} | {r['engine_mean_ms']:.1f} | "
              f"{r['engine_p50_ms']:.1f} | **{r['overhead_p50_ms']:.1f}** | **{r['overhead_p99_ms']:.1f}** | "
              f"{handler} |")
    print(f"raw: submit p50 {result['raw']['submit_p50_ms']:.1f} ms, retrieve_future p50 "
          f"{result['raw']['retrieve_p50_ms']:.1f} ms; SDK cost over raw (p50): "
          f"{result['sdk']['e2e_p50_ms'] - result['raw']['e2e_p50_ms']:.1f} ms; cycles that waited the gather "
          f"window: {result['sdk']['gather_waits'] + result['raw']['gather_waits']}")
    for way in ("sdk", "raw"):
        if result[way]["requests_not_one_cycle"]:
            print(f"warning: {way}: {result[way]['requests_not_one_cycle']} requests did not take exactly one cycle")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
