"""`openrl serve` as a subprocess, driven by httpx and raw sockets.

Checks the built-in routes, that /metrics counts the requests made, that malformed and oversized
requests get 4xx problems without hurting the server, and that SIGTERM/SIGINT exit 0.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pytest


def start_server(openrl_bin, *args, env=None):
    # A data directory of its own: one server at a time may serve a directory.
    data = tempfile.mkdtemp(prefix="openrl-http-test-")
    proc = subprocess.Popen(
        [str(openrl_bin), "serve", "--port", "0", "--data-dir", data, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", line)
    if not match:
        proc.kill()
        raise AssertionError(f"unexpected first line {line!r}; stderr: {proc.stderr.read()}")
    return proc, f"http://127.0.0.1:{match.group(1)}", int(match.group(1))


@pytest.fixture
def server(openrl_bin):
    proc, url, port = start_server(openrl_bin, "--max-body-mb", "1", "--threads", "2")
    yield proc, url, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def raw_exchange(port, data, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def metric_value(text, name, labels):
    pattern = re.escape(name + "{" + labels + "}") + r" (\S+)"
    m = re.search(pattern, text)
    return float(m.group(1)) if m else 0.0


def test_builtin_routes_metrics_limits_and_sigterm(server):
    proc, url, port = server
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.get("/healthz")
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}
        r = client.get("/readyz")
        assert r.status_code == 200
        assert r.json()["status"] == "ready"

        before = client.get("/metrics").text
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        r = client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE openrl_http_requests_total counter" in r.text
        assert "# TYPE openrl_http_request_duration_seconds histogram" in r.text
        labels = 'method="GET",route="/healthz",status="200"'
        assert metric_value(r.text, "openrl_http_requests_total", labels) == \
            metric_value(before, "openrl_http_requests_total", labels) + 3
        assert 'openrl_http_request_duration_seconds_bucket{method="GET",route="/healthz",le="+Inf"}' in r.text

        r = client.get("/no/such/route")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"] == "https://openrl.dev/problems/not-found"
        assert problem["status"] == 404 and problem["title"] and problem["detail"]

        r = client.post("/healthz", content=b"{}")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET"

        # A 2 MiB body to a GET-only route: refused (405) without reading it into memory, and
        # the client still gets the answer rather than a reset.
        r = client.post("/metrics", content=b"x" * (2 * 1024 * 1024))
        assert r.status_code == 405
    big = b"x" * (2 * 1024 * 1024)
    head = (b"PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big))
    reply = raw_exchange(port, head + big)
    assert reply.startswith(b"HTTP/1.1 4")

    for garbage in (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\xff" * 40 + b"\r\n\r\n",
                    b"HELLO WORLD\r\n\r\n",
                    b"GET / HTTP/1.1\r\nNo-Colon-Here\r\n\r\n"):
        reply = raw_exchange(port, garbage)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        assert b"application/problem+json" in reply

    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200  # still serving
        text = client.get("/metrics").text
        assert metric_value(text, "openrl_http_requests_total",
                            'method="OTHER",route="unmatched",status="400"') >= 2

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert proc.stdout.read() == ""


def test_oversized_body_on_post_route_is_413(openrl_bin):
    # The built-in routes are GET-only (a POST would be 405), so send a GET with a body above
    # --max-body-mb: the declared size alone earns the 413, and the client still reads it.
    proc, url, port = start_server(openrl_bin, "--max-body-mb", "1")
    try:
        big = 3 * 1024 * 1024
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % big
        reply = raw_exchange(port, head + b"y" * big)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert b"payload-too-large" in reply
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_sigterm_during_request_exits_cleanly(openrl_bin):
    proc, url, port = start_server(openrl_bin)
    # An idle keep-alive connection must not hold up shutdown.
    idle = socket.create_connection(("127.0.0.1", port))
    try:
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        idle.close()


def test_port_in_use_is_a_clear_error(openrl_bin, server, tmp_path):
    _, _, port = server
    # Another data directory: the first server's is locked (a second server there is refused first).
    proc = subprocess.run([str(openrl_bin), "serve", "--port", str(port), "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert f"127.0.0.1:{port}" in proc.stderr


def _status(reply):
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", reply)
    return int(m.group(1)) if m else None


def _mutations(rng, base):
    """Seeded HTTP framing damage: bytes flipped, cut, repeated and inserted; lying lengths; chunked
    encodings that are wrong; conflicting framing headers; oversized and odd lines."""
    head, _, body = base.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    choice = rng.randrange(14)
    if choice == 0:
        out = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if choice == 1:
        a = rng.randrange(len(base))
        return base[:a] + base[a + rng.randint(1, 20):]
    if choice == 2:
        a = rng.randrange(len(base))
        return base[:a] + base[a:a + rng.randint(1, 40)] * rng.randint(2, 50) + base[a:]
    if choice == 3:
        a = rng.randrange(len(base))
        return base[:a] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + base[a:]
    if choice == 4:  # a Content-Length that lies, or is no number
        cl = rng.choice([b"-1", b"0", b"1", b"99999999999999999999", b"1,1", b"0x10", b" 2", b"2 2", b"", b"\x00"])
        lines = [l for l in lines if not l.lower().startswith(b"content-length")] + [b"Content-Length: " + cl]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body
    if choice == 5:  # both framings at once (request smuggling shape)
        return b"\r\n".join(lines + [b"Transfer-Encoding: chunked"]) + b"\r\n\r\n" + body
    if choice == 6:  # chunked bodies with bad sizes, extensions, trailers, or no last chunk
        chunks = rng.choice([b"ffffffffffffffffff\r\nx\r\n0\r\n\r\n", b"2;ext=1\r\n{}\r\n0\r\n\r\n",
                             b"2\r\n{}\r\n0\r\nTrailer: x\r\n\r\n", b"2\r\n{}\r\n", b"z\r\n{}\r\n0\r\n\r\n",
                             b"-2\r\n{}\r\n0\r\n\r\n", b"2\r\n{}0\r\n\r\n", b"1\r\n{}\r\n0\r\n\r\n"])
        lines = [l for l in lines if not l.lower().startswith(b"content-length")] + [b"Transfer-Encoding: chunked"]
        return b"\r\n".join(lines) + b"\r\n\r\n" + chunks
    if choice == 7:  # many headers, or one very long one
        extra = [b"X-H%d: v" % i for i in range(rng.choice([50, 500, 5000]))] if rng.random() < 0.5 else \
            [b"X-Long: " + b"a" * rng.choice([8000, 70000])]
        return b"\r\n".join(lines[:1] + extra + lines[1:]) + b"\r\n\r\n" + body
    if choice == 8:  # odd request lines
        lines[0] = rng.choice([b"get /healthz HTTP/1.1", b"BREW /healthz HTTP/1.1", b"GET /healthz HTTP/2.0",
                               b"GET http://x/healthz HTTP/1.1", b"GET /%00/../healthz HTTP/1.1",
                               b"GET /" + b"a" * 20000 + b" HTTP/1.1", b"GET  /healthz  HTTP/1.1", b"GET",
                               b"GET /healthz?x=%zz HTTP/1.1", b"GET * HTTP/1.1"])
        return b"\r\n".join(lines) + b"\r\n\r\n" + body
    if choice == 9:  # header folding, bare LF, NUL in a value
        lines.insert(1, rng.choice([b"X-Fold: a\r\n b", b"X-Bare: a\nX-Other: b", b"X-Nul: a\x00b", b": empty-name",
                                    b"Host: second"]))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body
    if choice == 10:  # a body encoding that is not one
        lines = lines + [b"Content-Encoding: " + rng.choice([b"zstd", b"gzip", b"zstd, zstd", b"identity, br", b",,"])]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body
    if choice == 11:  # pipelined: the request twice, then garbage
        return base + base + b"\x00garbage\r\n\r\n"
    if choice == 12:  # the head only, the body never comes
        return head + b"\r\n\r\n"
    return base[:rng.randrange(len(base))]  # cut anywhere


def test_mutated_http_requests_never_crash_the_server(server):
    """400 seeded framing mutations of real requests, over raw sockets, some sent in pieces: each
    connection gets a well-formed HTTP answer below 500 (501 or 505 for what HTTP/1.1 does not do
    are allowed) or is closed; the server stays up and answers /healthz throughout."""
    import random
    import zstandard

    proc, url, port = server
    rng = random.Random(20261207)
    zbody = zstandard.ZstdCompressor().compress(b'{"tags": [], "sdk_version": "x"}')
    bases = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/v1/create_session HTTP/1.1\r\nHost: x\r\nX-API-Key: tml-nope\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /api/v1/create_session HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /api/v1/create_session HTTP/1.1\r\nHost: x\r\nContent-Encoding: zstd\r\nContent-Length: %d\r\n\r\n"
        % len(zbody) + zbody,
        b"GET /metrics HTTP/1.0\r\n\r\n",
    ]
    bad = []
    for i in range(400):
        data = _mutations(rng, rng.choice(bases))
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            try:
                if rng.random() < 0.3:  # in pieces, as a slow client sends
                    for a in range(0, len(data), 7):
                        s.sendall(data[a:a + 7])
                else:
                    s.sendall(data)
                if rng.random() < 0.85:  # else the connection stays open and the server must wait
                    s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may close on a bad head before the rest is sent
            reply = b""
            try:
                while len(reply) < 1 << 20:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
            except (socket.timeout, ConnectionResetError):
                pass
        code = _status(reply)
        if reply and code is None:
            bad.append((i, data[:120], reply[:200]))
        elif code is not None and code >= 500 and code not in (501, 505):
            bad.append((i, data[:120], reply[:300]))
        if i % 100 == 99:
            assert proc.poll() is None, f"the server died after case {i}"
            assert httpx.get(url + "/healthz", timeout=10).status_code == 200
    assert not bad, "\n".join(map(str, bad[:20]))
    assert proc.poll() is None
    assert httpx.get(url + "/healthz", timeout=10).status_code == 200


def engine_tensor_threads(url):
    """The engine's tensor threads as /metrics reports them (the engine thread sets the gauge as it
    starts, which may be just after the server listens)."""
    deadline = time.time() + 20
    while time.time() < deadline:
        m = re.search(r"^openrl_engine_tensor_threads (\S+)$", httpx.get(url + "/metrics").text, re.M)
        if m:
            return float(m.group(1))
        time.sleep(0.05)
    raise AssertionError("/metrics has no openrl_engine_tensor_threads")


def test_engine_threads_come_from_the_flag_else_omp_num_threads_else_atens_default(openrl_bin):
    """--engine-threads sets the engine's tensor threads; without it, ATen's default in that
    environment (OMP_NUM_THREADS, at most one per core; else one per core), which torch reports."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}

    def torch_default(extra_env):
        return int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                  env={**env, **extra_env}, capture_output=True, text=True, check=True).stdout)

    cases = [(["--engine-threads", "1"], {}, 1), (["--engine-threads", "3"], {"OMP_NUM_THREADS": "1"}, 3),
             ([], {"OMP_NUM_THREADS": "1"}, 1), ([], {}, torch_default({})),
             ([], {"OMP_NUM_THREADS": "3"}, torch_default({"OMP_NUM_THREADS": "3"}))]
    assert cases[3][2] >= 1
    for args, extra_env, want in cases:
        proc, url, _ = start_server(openrl_bin, *args, env={**env, **extra_env})
        try:
            assert engine_tensor_threads(url) == want, (args, extra_env)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
    bad = subprocess.run([str(openrl_bin), "serve", "--port", "0", "--engine-threads", "-1", "--data-dir",
                          tempfile.mkdtemp(prefix="openrl-http-test-")], capture_output=True, text=True, timeout=20)
    assert bad.returncode != 0 and "--engine-threads must be >= 0" in bad.stderr
