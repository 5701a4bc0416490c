"""Shared pieces of the OpenRL benchmarks: model configs, the machine's description, a measured
matmul peak, and a driver for the `openrl` binary.

Every benchmark runs ours (the `openrl` binary, as a subprocess) and the peer (transformers /
PEFT / torch.optim in this Python process) in the same run, with the same torch wheel, the same
thread count and the same batch, and writes one JSON file under bench/out/.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import torch
import transformers

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = pathlib.Path(os.environ.get("OPENRL_BENCH_OUT", REPO / "bench" / "out"))

# Llama-architecture configs. Parameter counts are computed from the built model, not assumed.
CONFIGS = {
    # ~23M: hidden 512, 8 layers, GQA 8/4, tied embeddings (vocab 8192).
    "llama-20m": dict(vocab_size=8192, hidden_size=512, intermediate_size=1024, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, tie_word_embeddings=True),
    # ~117M (GPT-2-small-like): hidden 768, 12 layers, MHA 12, tied embeddings (vocab 32000).
    "llama-120m": dict(vocab_size=32000, hidden_size=768, intermediate_size=2304, num_hidden_layers=12,
                       num_attention_heads=12, num_key_value_heads=12, tie_word_embeddings=True),
    # SmolLM2-135M-Instruct's shape (134.5M): hidden 576, 30 layers, GQA 9/3, head 64, tied vocab 49152, with
    # random weights: the same work per token as the real model, for machines the GGUF cannot be carried to.
    "smollm2-shape": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                          num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True),
}

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# Real models shipped as GGUF (`make setup` links them under var/models/).
GGUF_MODELS = {
    "smollm2-135m": REPO / "var" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": REPO / "var" / "models" / "gemma-3-270m-q4_k_m.gguf",
}


def default_binary() -> pathlib.Path:
    build = pathlib.Path(os.environ.get("OPENRL_BUILD", REPO / "build"))
    return build / "src" / "openrl" / "cli" / "openrl"


def wait_for_binary(path: pathlib.Path, seconds: float = 300.0) -> None:
    """The lead may be relinking the binary: wait for it to reappear rather than fail at once."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and os.access(path, os.X_OK)):
        if time.monotonic() > deadline:
            sys.exit(f"bench: {path} not found (build it with `make build` or set OPENRL_BUILD)")
        time.sleep(5)


def make_llama(name: str, out_dir: pathlib.Path, seed: int = 0, max_positions: int = 512):
    """Builds the named config with random weights (seeded), saves it as an HF dir, returns the model."""
    cfg = transformers.LlamaConfig(**CONFIGS[name], max_position_embeddings=max_positions,
                                   rms_norm_eps=1e-6, rope_theta=10000.0, bos_token_id=1,
                                   eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg).to(torch.float32)
    model.generation_config.eos_token_id = None
    if not (out_dir / "model.safetensors").exists():
        model.save_pretrained(out_dir, safe_serialization=True)
    return model


def imported_model(binary: pathlib.Path, name: str, dtype: str = "float32") -> pathlib.Path:
    """The GGUF model `name` imported once by `openrl model import` under bench/out/models/ (reused)."""
    out = OUT / "models" / f"{name}-{dtype}"
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [str(binary), "model", "import", str(GGUF_MODELS[name]), "--out", str(out), "--dtype", dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return out


def num_params(model) -> int:
    """Distinct parameters (a tied embedding counted once), as the engine's NumParameters()."""
    return sum(p.numel() for p in model.parameters())


def matmul_peak_flops(threads: int, n: int = 2048, seconds: float = 3.0, device: str = "cpu",
                      dtype: torch.dtype = torch.float32) -> float:
    """Measured matmul peak (fp32 sgemm on CPU): the best of n×n matmuls timed for `seconds`, FLOP/s."""
    torch.set_num_threads(threads)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)
    sync(device)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load_average() -> list[float]:
    return [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]


def machine() -> dict:
    cpu = "unknown"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "load_average_at_start": load_average()}


def versions(*extra: str) -> dict:
    """Peer versions; `extra` names further modules to record (e.g. "llama_cpp")."""
    import importlib
    import peft
    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "python": platform.python_version()}
    for name in extra:
        out[name] = getattr(importlib.import_module(name), "__version__", "unknown")
    return out


def openrl_help(binary: pathlib.Path, sub: str) -> str:
    return subprocess.run([str(binary), sub, "--help"], capture_output=True, text=True).stdout


def write_result(name: str, result: dict) -> pathlib.Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


class JsonLinesProcess:
    """An `openrl` JSON-lines filter kept open, so several requests share one model load."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)

    def request(self, req: dict) -> tuple[dict, float]:
        t0 = time.perf_counter()
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        seconds = time.perf_counter() - t0
        if not line:
            raise RuntimeError(f"openrl exited: {self.proc.stderr.read()}")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"openrl error: {out}")
        return out, seconds

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
