"""`openrl serve` as a subprocess, driven by httpx and raw sockets.

Checks the built-in routes, that /metrics counts the requests made, that malformed and oversized
requests get 4xx problems without hurting the server, and that SIGTERM/SIGINT exit 0.
"""
import re
import signal
import socket
import subprocess
import time

import httpx
import pytest


def start_server(openrl_bin, *args):
    proc = subprocess.Popen(
        [str(openrl_bin), "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


def test_port_in_use_is_a_clear_error(openrl_bin, server):
    _, _, port = server
    proc = subprocess.run([str(openrl_bin), "serve", "--port", str(port)],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert f"127.0.0.1:{port}" in proc.stderr
