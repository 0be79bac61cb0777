"""`python -m app demo` against the real service, both run as subprocesses the way a person runs them."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import running

ROOT = Path(__file__).resolve().parents[1]
SECRET = "demo-test-secret-" + "0123456789abcdef" * 3  # 65 characters


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "REDIS_", "DATABASE_", "RATE_"))}
    return {**base, "DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "JWT_SECRET": SECRET}


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with running([sys.executable, "-m", "app"], env, tmp_path / "server.log") as server:
        yield server.url


def _demo(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "app", "demo", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _applied(output: str) -> int:
    match = re.search(r"^demo: done after .*\bapplied=(\d+)\b.*\berrors=0$", output, re.MULTILINE)
    assert match, output
    return int(match[1])


def _top_until(url: str, total: Callable[[int], bool], within: float = 15.0) -> list[dict[str, Any]]:
    """/top?limit=50 once the sum of its scores satisfies `total`: /top is the only signal from outside,
    and it lags by a push interval. After the deadline, whatever it shows (the caller's asserts say why)."""
    deadline = time.monotonic() + within
    while True:
        entries: list[dict[str, Any]] = _get(f"{url}/top?limit=50")["entries"]
        if total(sum(e["score"] for e in entries)) or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def test_demo_scores_named_players_through_the_api(server: str, env: dict[str, str]) -> None:
    with _demo(env, "--url", server, "--duration", "2", "--rate", "20") as demo:
        out, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err
    applied = _applied(out)
    assert applied > 0
    entries = _top_until(server, lambda total: total == 10 * applied)
    scored = [e for e in entries if e["score"] > 0]
    assert scored and all(e["displayName"] and e["userId"].startswith("demo-") for e in scored)
    assert sum(e["score"] for e in entries) == 10 * applied


def test_ctrl_c_stops_cleanly_with_a_summary(server: str, env: dict[str, str]) -> None:
    with _demo(env, "--url", server, "--rate", "20") as demo:
        assert demo.stdout is not None
        assert demo.stdout.readline().startswith("demo: 12 players")  # set up and sending
        scored = _top_until(server, lambda total: total > 0)  # interrupted mid-run, once something went through
        assert sum(e["score"] for e in scored) > 0
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=15)
    assert demo.returncode == 0, err
    assert _applied(out) > 0


def test_without_jwt_secret_exits_2_with_one_line(env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "JWT_SECRET"}
    with _demo(env, "--url", "http://127.0.0.1:1") as demo:
        out, err = demo.communicate(timeout=15)
    lines = err.strip().splitlines()
    assert demo.returncode == 2
    assert len(lines) == 1 and "same one" in lines[0] and "JWT_SECRET" in lines[0]
