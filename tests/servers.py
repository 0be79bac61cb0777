"""The service as a real process (python -m app, or gunicorn workers) on a free port, for black-box tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import SECRET
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            body: bytes = response.read()
            return body

    def terminate(self, timeout: float = 30) -> float:
        """SIGTERM; returns the seconds until the process exited."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout)
        return time.monotonic() - started


def environment(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(JWT_SECRET=SECRET, RATE_LIMIT_USER="100000/minute", RATE_LIMIT_CALLER="1000000/minute")
    env.update(overrides)
    return env


def serve_command() -> list[str]:
    return [sys.executable, "-m", "app", "serve"]


def gunicorn_command(workers: int) -> list[str]:
    return [str(BIN / "gunicorn"), "app.gunicorn:app", "--worker-class", "aiohttp.GunicornWebWorker",
            "--workers", str(workers), "--graceful-timeout", "5", "--no-control-socket"]


@contextmanager
def running(command: list[str], env: Mapping[str, str], log: Path) -> Iterator[Server]:
    """Start the command on a free port, wait for /healthz, SIGTERM it at the end."""
    port = free_port()
    bind = ["--bind", f"127.0.0.1:{port}"] if "gunicorn" in command[0] else []
    with log.open("wb") as output:
        process = subprocess.Popen([*command, *bind], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   env={**env, "HOST": "127.0.0.1", "PORT": str(port)})
    server = Server(process, port)
    try:
        _wait_healthy(server, log)
        yield server
    finally:
        if process.poll() is None:
            server.terminate()


def _wait_healthy(server: Server, log: Path, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            server.get("/healthz")
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer /healthz: {log.read_text()[-2000:]}")
