"""Starts a real `openrl serve` process with the Tinker API for tests and benchmarks."""
import contextlib
import json
import os
import pathlib
import re
import signal
import shutil
import subprocess
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
# OPENRL_SMOLLM2_MODEL serves another file or directory under SmolLM2's name (bench/gpu/run.sh: the same
# shape with random weights, on a machine the GGUF cannot be carried to).
SMOLLM2_GGUF = pathlib.Path(os.environ.get("OPENRL_SMOLLM2_MODEL", REPO / "var" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))


def create_key(binary, data_dir, name="test", extra=()):
    out = subprocess.run([str(binary), "keys", "create", "--data-dir", str(data_dir), "--name", name, *extra],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["key"]


class Server:
    """One `openrl serve` process over `data_dir`; restartable (the data directory persists)."""

    def __init__(self, binary, data_dir, base_models=None, extra_args=()):
        self.binary = pathlib.Path(binary)
        self.data_dir = pathlib.Path(data_dir)
        self.base_models = base_models or {SMOLLM2_NAME: SMOLLM2_GGUF}
        self.extra_args = list(extra_args)
        self.proc = None
        self.url = None
        self.log_path = self.data_dir / "server.log"

    def start(self, timeout=60):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # OPENRL_SERVE_ARGS adds flags to every server started here (e.g. "--device cuda --dtype bfloat16"
        # in bench/gpu/run.sh).
        args = [str(self.binary), "serve", "--data-dir", str(self.data_dir), "--port", "0", *self.extra_args,
                *os.environ.get("OPENRL_SERVE_ARGS", "").split()]
        for name, path in self.base_models.items():
            args += ["--base-model", f"{name}={path}"]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"openrl serve exited {self.proc.returncode}: {self.log_path.read_text()}")
                continue
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                return self
        raise TimeoutError("openrl serve did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def metrics(self):
        import urllib.request
        text = urllib.request.urlopen(self.url + "/metrics").read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values


def start_with_key(binary, data_dir, **kwargs):
    """A fresh API key, then a started server over `data_dir`; the key is `server.key`."""
    key = create_key(binary, data_dir)
    srv = Server(binary, data_dir, **kwargs).start()
    srv.key = key
    return srv


@contextlib.contextmanager
def temporary_server(binary, prefix, **kwargs):
    """start_with_key over a fresh temporary data directory, stopped afterwards; the directory is
    removed unless the body failed (its server.log then says why)."""
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    srv = start_with_key(binary, data_dir, **kwargs)
    try:
        yield srv
    finally:
        srv.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def service_client(server, key):
    os.environ.setdefault("TINKER_TELEMETRY", "0")
    import tinker
    return tinker.ServiceClient(base_url=server.url, api_key=key)


def rest_client(server, key):
    os.environ.setdefault("TINKER_TELEMETRY", "0")
    import tinker
    return tinker.RestClient(base_url=server.url, api_key=key)
