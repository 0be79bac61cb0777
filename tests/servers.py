"""The one harness that runs the service as a real process (python -m app, or gunicorn workers) for black-box tests.

Sync methods for sync tests; `*_async` faces run the same steps in a thread so an event loop keeps going.
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import SECRET
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START_WITHIN = 20.0


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, the service gets SIGKILL when pytest dies, even if pytest itself is killed."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

    return set_signal


class Server:
    """One service process on a fixed port: start, SIGTERM, SIGKILL, start again on the same port."""

    def __init__(self, env: Mapping[str, str], log: Path, command: list[str] | None = None,
                 port: int | None = None, cwd: Path = ROOT) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log = log
        self.command = command or serve_command()
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, within: float = START_WITHIN) -> None:
        """Spawn the process and wait until GET /healthz answers 200; kill it if it does not."""
        self._spawn()
        self._healthy_or_killed(within)

    async def start_async(self, within: float = START_WITHIN) -> None:
        self._spawn()  # in this thread: PDEATHSIG fires when the spawning thread ends, not the process
        await asyncio.to_thread(self._healthy_or_killed, within)

    def _spawn(self) -> None:
        bind = ["--bind", f"127.0.0.1:{self.port}"] if "gunicorn" in self.command[0] else []
        with self.log.open("ab") as output:  # the child keeps its own descriptor
            self.process = subprocess.Popen([*self.command, *bind], cwd=self.cwd, env=self.env, stdout=output,
                                            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent())

    def _healthy_or_killed(self, within: float) -> None:
        assert self.process is not None
        try:
            self._wait_healthy(self.process, within)
        except BaseException:
            self.kill()
            raise

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            body: bytes = response.read()
            return body

    def terminate(self, timeout: float = 30) -> float:
        """SIGTERM and wait for the exit; returns the seconds it took."""
        started = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout)
        return time.monotonic() - started

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL if it has not ended in `timeout` seconds."""
        try:
            self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(10)

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def _wait_healthy(self, process: subprocess.Popen[bytes], within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}: {self.output()}")
            try:
                self.get("/healthz")
                return
            except OSError:  # refused, reset, or an HTTP error status (HTTPError is an OSError)
                time.sleep(0.1)  # polling /healthz: it is the readiness signal
        raise RuntimeError(f"the server did not answer /healthz within {within} s: {self.output()}")


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
    server = Server(env, log, command)
    server.start()
    try:
        yield server
    finally:
        server.terminate()
