"""Sums a libtorch profiler trace per op: self time, total time, calls.

The trace is the Chrome-trace JSON that `openrl train --profile FILE` writes (or that
`torch.profiler.profile(...).export_chrome_trace(FILE)` writes for a peer), so our step and a peer's
can be read side by side. Self time = an op's duration minus the durations of the ops nested
directly inside it on the same thread.

Usage: bench/profile_report.py TRACE.json [--top N] [--by-shape]
"""
import argparse
import collections
import json


def self_times(events: list[dict], by_shape: bool) -> dict:
    ops = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation")]
    per_thread = collections.defaultdict(list)
    for e in ops:
        per_thread[e.get("tid")].append(e)
    stats = collections.defaultdict(lambda: [0.0, 0.0, 0])  # self µs, total µs, calls
    for evs in per_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list] = []  # [end, event, child µs]
        def close(upto):
            while stack and stack[-1][0] <= upto:
                end, ev, child = stack.pop()
                key = ev["name"]
                if by_shape:
                    key += " " + json.dumps(ev.get("args", {}).get("Input Dims", []))
                s = stats[key]
                s[0] += ev["dur"] - child
                s[1] += ev["dur"]
                s[2] += 1
                if stack:
                    stack[-1][2] += ev["dur"]
        for e in evs:
            close(e["ts"])
            stack.append([e["ts"] + e["dur"], e, 0.0])
        close(float("inf"))
    return stats


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--by-shape", action="store_true", help="one row per op and input shapes")
    a = p.parse_args()
    with open(a.trace) as f:
        events = json.load(f)["traceEvents"]
    stats = self_times(events, a.by_shape)
    total = sum(s[0] for s in stats.values())
    print(f"{'op':70s} {'self ms':>9s} {'self %':>7s} {'total ms':>9s} {'calls':>6s}")
    for name, (self_us, total_us, calls) in sorted(stats.items(), key=lambda kv: -kv[1][0])[: a.top]:
        print(f"{name[:70]:70s} {self_us / 1e3:9.1f} {100 * self_us / total:6.1f}% {total_us / 1e3:9.1f} {calls:6d}")
    print(f"{'all ops (self)':70s} {total / 1e3:9.1f}")


if __name__ == "__main__":
    main()
