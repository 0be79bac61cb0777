"""The processes a live-path benchmark runs: the service, the trivial aiohttp app, nginx + nchan, wrk."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt

from bench.backends import SECRET, Services, services

ROOT = Path(__file__).resolve().parents[1]
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
START_WITHIN = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid


def _wait_listening(process: Process, path: str, log: Path) -> None:
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.popen.args!r} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(process.url + path, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{process.popen.args!r} did not answer {path}")


@contextlib.contextmanager
def started(command: list[str], env: Mapping[str, str], port: int, ready_path: str, log: Path) -> Iterator[Process]:
    with log.open("wb") as output:
        popen = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env=dict(env))
    process = Process(popen, port)
    try:
        _wait_listening(process, ready_path, log)
        yield process
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(20)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


def token() -> str:
    claims = {"sub": "bench", "scope": "scores:write users:write", "aud": "scoreboard", "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@contextlib.contextmanager
def service(where: Services, workdir: Path, workers: int = 1, **env: str) -> Iterator[Process]:
    """`python -m app` (or gunicorn with `workers`) on PostgreSQL + Redis, default settings otherwise."""
    with services(where) as settings:
        port = free_port()
        environ = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
        environ.update(DATABASE_URL=settings.database_url, REDIS_URL=where.redis_url,
                       REDIS_PREFIX=settings.redis_prefix,
                       JWT_SECRET=SECRET, HOST="127.0.0.1", PORT=str(port), RATE_LIMIT_USER="10000000/hour",
                       RATE_LIMIT_CALLER="100000000/hour", STREAM_MAX_PER_CLIENT="100000", **env)
        command = [sys.executable, "-m", "app", "serve"]
        if workers > 1:
            metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-")
            environ.update(WEB_CONCURRENCY=str(workers), PROMETHEUS_MULTIPROC_DIR=metrics_dir)
            command = [str(Path(sys.executable).parent / "gunicorn"), "app.gunicorn:app", "--worker-class",
                       "aiohttp.GunicornWebWorker", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                       "--graceful-timeout", "5", "--no-control-socket"]
        with started(command, environ, port, "/readyz", workdir / f"service-{port}.log") as process:
            yield process


def post_json(url: str, body: object, bearer: str) -> object:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {bearer}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def seed(url: str, users: int, name_length: int = 12) -> None:
    """`users` users with long-ish names and distinct scores, so the top 10 has a realistic size."""
    bearer = token()
    for i in range(users):
        user = f"user-{i:04d}"
        put = urllib.request.Request(f"{url}/users/{user}", method="PUT",
                                     data=json.dumps({"displayName": f"{user[:4]}{'n' * name_length}{i}"}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"})
        urllib.request.urlopen(put, timeout=10).close()
        for _ in range(1 + i % 3):
            post_json(f"{url}/scores/increment", {"userId": user, "actionId": uuid.uuid4().hex}, bearer)


def fetch(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), dict(response.headers)


@contextlib.contextmanager
def trivial(body: bytes, workdir: Path) -> Iterator[Process]:
    """The anchor: a bare aiohttp app that returns `body` from memory, nothing else."""
    path = workdir / "body.json"
    path.write_bytes(body)
    port = free_port()
    command = [sys.executable, "-m", "bench.trivial", str(port), str(path)]
    with started(command, dict(os.environ), port, "/top", workdir / "trivial.log") as process:
        yield process


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(url: str, connections: int, seconds: float) -> WrkResult:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    latency = {m[1]: _ms(m[2]) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M)}
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(rps, latency["50"], latency["99"], errors + (int(non2xx[1]) if non2xx else 0))


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (clock ticks from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0
