"""The tiny runs' bundles, and `tunepipe serve` started for real on a free local port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def bundle(tiny_run) -> Path:
    return tiny_run / "results" / "export" / "bundle"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1")


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def request(self, method: str, path: str, body: bytes | str | dict | list | None = None, *, content_type: str | None = "application/json",
                headers: dict[str, str] | None = None) -> tuple[int, dict | str, dict[str, str]]:
        """(status, JSON body or text, headers) of a real HTTP request; 4xx/5xx are returned, not raised."""
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if content_type and data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, raw, got = exc.code, exc.read(), dict(exc.headers)
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text), got
        except json.JSONDecodeError:
            return status, text, got

    def predict(self, inputs: list, headers: dict[str, str] | None = None) -> dict:
        status, body, _ = self.request("POST", "/v1/predict", {"inputs": inputs}, headers=headers)
        assert status == 200, body
        return body

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample in /metrics (0.0 when absent)."""
        status, text, _ = self.request("GET", "/metrics")
        assert status == 200
        want = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric, _, rest = sample.partition("{")
            if metric == name and ",".join(sorted(rest.rstrip("}").split(","))) == want:
                return float(value)
        return 0.0


@contextlib.contextmanager
def running_server(*args: str, log_dir: Path, startup_s: float = 120):
    """`tunepipe serve ARGS` in a subprocess on a free port; waits for /ready, stops it (SIGTERM) afterwards."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "tunepipe.cli", "serve", *args, "--port", str(port)], stdout=handle,
                                   stderr=subprocess.STDOUT, env=serve_env())
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"tunepipe serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if server.request("GET", "/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"tunepipe serve not ready after {startup_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
