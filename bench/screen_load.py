"""`python -m bench screen-load`: commit-to-screen latency at a paced 1,000 increments/s.

The service runs as in `bench increments` (gunicorn, one worker by default). wrk posts increments
to ten users at about the rate (each connection pauses between requests), so every increment
changes the top 10, while a stream client here reads `GET /stream`. For each increment, the
latency runs from its commit (the event's created_at, the database's clock on this machine) to
the first frame received that shows the user at that score or above. Run under
`flock /tmp/scoreboard-bench.lock`.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import psycopg2

from app.auth.tokens import mint_token
from app.config import Settings
from bench import increments

CONNECTIONS = 64
EXPECTED_LATENCY_MS = 15  # subtracted from each connection's pause, so the rate comes out near the target


@dataclass
class Screen:
    """Every frame the stream client received: when, and each user's score on it."""

    times: list[float] = field(default_factory=list)
    scores: list[dict[str, int]] = field(default_factory=list)

    def first_showing(self, user_id: str, score: int, after: int = 0) -> float | None:
        for index in range(after, len(self.times)):
            if self.scores[index].get(user_id, -(2**63)) >= score:
                return self.times[index]
        return None


async def _watch(session: aiohttp.ClientSession, url: str, screen: Screen, stop: asyncio.Event) -> None:
    async with session.get(url + "/stream") as response:
        data: list[str] = []
        while not stop.is_set():
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                body = json.loads("".join(data))
                data = []
                screen.times.append(time.time())  # the wall clock: commits are timed by the database's
                screen.scores.append({e["userId"]: e["score"] for e in body["entries"]})


WRK_PACED = """
local token, pause, n = os.getenv("BENCH_TOKEN"), tonumber(os.getenv("BENCH_PAUSE_MS")), 0
function setup(thread) thread:set("id", tostring(math.random(1, 1e9))) end
function request()
  n = n + 1
  local body = '{"userId":"hot' .. (n % 10) .. '","actionId":"' .. id .. '-' .. os.time() .. '-' .. n .. '"}'
  return wrk.format("POST", "/scores/increment",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
function delay() return pause end
"""


async def _paced_wrk(url: str, token: str, rate: float, seconds: float) -> None:
    """wrk with a pause before each request: CONNECTIONS / (pause + latency) is about `rate`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_PACED)
    pause_ms = max(1, int(CONNECTIONS / rate * 1000) - EXPECTED_LATENCY_MS)
    try:
        process = await asyncio.create_subprocess_exec(
            "wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", f"{seconds:.0f}s", "-s", script.name, url,
            env={**os.environ, "BENCH_TOKEN": token, "BENCH_PAUSE_MS": str(pause_ms)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.wait_for(process.wait(), seconds + 60)
    finally:
        os.unlink(script.name)


async def _load(url: str, token: str, rate: float, seconds: float) -> Screen:
    """The frames a stream client received while wrk posted at about `rate`."""
    screen, stop = Screen(), asyncio.Event()
    async with aiohttp.ClientSession() as session:
        watcher = asyncio.create_task(_watch(session, url, screen, stop))
        await _paced_wrk(url, token, rate, seconds)
        await asyncio.sleep(1.0)  # the last pushes (the push interval is 250 ms)
        stop.set()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return screen


def _commits(settings: Settings, since: float) -> list[tuple[str, int, float]]:
    """(user, score after, commit time) of the run's events; created_at is the transaction's
    start, so the latency measured from it includes the commit itself."""
    if settings.database_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))) as conn:
            rows = conn.execute("SELECT user_id, score_after, created_at FROM score_events").fetchall()
        events = [(u, int(s), datetime.fromisoformat(at).timestamp()) for u, s, at in rows]
    else:
        base, schema = settings.database_url.split("?schema=")
        with contextlib.closing(psycopg2.connect(base)) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT user_id, score_after, extract(epoch FROM created_at) FROM {schema}.score_events")
            events = [(u, int(s), float(at)) for u, s, at in cur.fetchall()]
    return [event for event in events if event[2] >= since and event[0].startswith("hot")]


def _latencies(screen: Screen, commits: list[tuple[str, int, float]], seconds: float) -> dict[str, Any]:
    latencies, missing = [], 0
    for user_id, score, committed in commits:
        shown = screen.first_showing(user_id, score, max(0, bisect.bisect_left(screen.times, committed) - 1))
        if shown is None:
            missing += 1
        else:
            latencies.append(max(0.0, shown - committed) * 1000)
    return {"applied": len(commits), "achieved_rate": len(commits) / seconds, "frames": len(screen.times),
            "never_shown": missing, "commit_to_screen_ms": _percentiles(latencies)}


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"p50": statistics.median(ordered), "p99": ordered[int(0.99 * (len(ordered) - 1))], "max": ordered[-1]}


def run(store: str, workers: int, rate: float, seconds: float, rounds: int) -> dict[str, Any]:
    with increments._database(store) as (settings, _), increments._server(settings, workers) as url:
        token = mint_token(settings, sub="bench", scopes="scores:write", ttl=3600)
        results = []
        for _ in range(rounds):
            since = time.time()
            screen = asyncio.run(_load(url, token, rate, seconds))
            results.append(_latencies(screen, _commits(settings, since), seconds))
    p99s = [r["commit_to_screen_ms"].get("p99", float("nan")) for r in results]
    return {"store": store, "workers": workers, "rate": rate, "seconds": seconds, "rounds": results,
            "commit_to_screen_p99_ms_median": statistics.median(p99s),
            "achieved_rate_median": statistics.median(r["achieved_rate"] for r in results)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench screen-load", description=__doc__)
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=1000.0, help="increments per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.store, args.workers, args.rate, args.seconds, args.rounds)
    for number, round_ in enumerate(result["rounds"], 1):
        print(f"round {number}: {round_['achieved_rate']:.0f} applied/s, commit-to-screen "
              f"{round_['commit_to_screen_ms']}, frames {round_['frames']}, never shown {round_['never_shown']}")
    print(f"commit-to-screen p99, median of rounds: {result['commit_to_screen_p99_ms_median']:.0f} ms")
    print(f"written: {increments.write([result], f'screen-load-{args.store}-w{args.workers}')}")
    return 0
