"""`python -m bench redis-outage`: increments while Redis is killed and restarted empty (issue 12).

The service (`python -m app`, PostgreSQL + its own redis-server) gets increments at a steady
`--rate` over `--users` users, each retried with the same actionId until answered 200 (as a
game backend would); a poller reads GET /scores of users with acknowledged increments. Each
round: `--before` seconds with Redis up (the anchor), Redis killed (SIGKILL) for `--down`
seconds, restarted empty, `--after` seconds. Per phase: p50/p99 of every increment attempt
by the time it was sent, and its answers by status. At the end the database is checked row
by row: every acknowledged actionId once, each user's score the sum of its events and of the
acknowledged deltas. Run it under `flock /tmp/scoreboard-bench.lock`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.backends import SECRET
from bench.private import POSTGRES, RedisServer, free_port, redis_server, schema, sql
from bench.procs import started, token
from bench.report import RESULTS, _machine

PHASES = ("before", "during", "after")
RETRY_PAUSE = 0.05  # seconds between two attempts of one actionId
GIVE_UP = 60.0  # seconds an actionId is retried before the run counts it as a failure
READS_PER_SECOND = 20
# BENCH_PROFILE=1: py-spy (from this venv) records the service while Redis is down
PROFILE = str(Path(sys.executable).parent / "py-spy") if os.environ.get("BENCH_PROFILE") else ""


@dataclass
class Attempt:
    sent: float
    seconds: float
    status: int  # 0: no HTTP answer


@dataclass
class Run:
    """Everything the clients saw, and when Redis went away and came back."""

    attempts: list[Attempt] = field(default_factory=list)
    acknowledged: dict[str, tuple[str, int]] = field(default_factory=dict)  # actionId -> (user, delta)
    answered_503: set[str] = field(default_factory=set)
    committed_but_503: int = 0  # a 503 whose retry was answered as a replay: it had been written
    newest: dict[str, int] = field(default_factory=dict)  # user -> highest acknowledged newScore
    reads: Counter[int] = field(default_factory=Counter)
    reads_404_committed: int = 0
    reads_regressed: int = 0
    gave_up: int = 0
    outages: list[tuple[float, float, float, float]] = field(default_factory=list)  # (from, kill, restart, to)

    def phase(self, sent: float) -> tuple[int, str] | None:
        for number, (begin, kill, restart, end) in enumerate(self.outages):
            if begin <= sent < kill:
                return number, "before"
            if kill <= sent < restart:
                return number, "during"
            if restart <= sent < end:
                return number, "after"
        return None


class Clients:
    def __init__(self, url: str, users: int, rate: float, run: Run) -> None:
        self._url, self._users, self._rate, self._run = url, users, rate, run
        self._headers = {"Authorization": f"Bearer {token()}", "Content-Type": "application/json"}
        self._stop = asyncio.Event()
        self._actions: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Clients:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                              timeout=aiohttp.ClientTimeout(total=30))
        self._tasks = [asyncio.create_task(self._pace()), asyncio.create_task(self._poll())]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._actions:  # every action in flight is retried until answered
            await asyncio.wait(self._actions, timeout=GIVE_UP + 10)
        await self._session.close()

    async def _pace(self) -> None:
        """Open loop: a new action every 1/rate seconds, however slowly the others are answered."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stop.is_set():
            task = asyncio.create_task(self._action(f"u{random.randint(1, self._users)}", uuid.uuid4().hex))
            self._actions.add(task)
            task.add_done_callback(self._actions.discard)
            next_at += 1 / self._rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _action(self, user: str, action_id: str) -> None:
        run, body = self._run, json.dumps({"userId": user, "actionId": action_id})
        first = time.monotonic()
        while time.monotonic() - first < GIVE_UP:
            sent = time.monotonic()
            status, answer = 0, None
            try:
                async with self._session.post(f"{self._url}/scores/increment", data=body,
                                              headers=self._headers) as response:
                    status, answer = response.status, await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            run.attempts.append(Attempt(sent, time.monotonic() - sent, status))
            if status == 200 and isinstance(answer, dict):
                if action_id in run.answered_503 and not answer["applied"]:
                    run.committed_but_503 += 1
                run.acknowledged[action_id] = (user, int(answer["delta"]))
                run.newest[user] = max(run.newest.get(user, 0), int(answer["newScore"]))
                return
            if status == 503:
                run.answered_503.add(action_id)
            await asyncio.sleep(RETRY_PAUSE)
        run.gave_up += 1

    async def _poll(self) -> None:
        """GET /scores of users with acknowledged increments: a 404 or a score below an
        acknowledged one is a read that lies."""
        run = self._run
        while not self._stop.is_set():
            await asyncio.sleep(1 / READS_PER_SECOND)
            if not run.newest:
                continue
            user = random.choice(list(run.newest))
            floor = run.newest[user]
            try:
                async with self._session.get(f"{self._url}/scores/{user}") as response:
                    status, answer = response.status, await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                status, answer = 0, None
            run.reads[status] += 1
            run.reads_404_committed += status == 404
            if status == 200 and isinstance(answer, dict) and int(answer["score"]) < floor:
                run.reads_regressed += 1


async def _profile(pid: int, seconds: float, name: str) -> None:
    process = await asyncio.create_subprocess_exec(
        PROFILE, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-f", "raw", "-o",
        str(RESULTS / f"redis-outage-{name}.txt"), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    await process.wait()


async def _outages(args: argparse.Namespace, url: str, redis: RedisServer, pid: int, run: Run) -> None:
    async with Clients(url, args.users, args.rate, run):
        await asyncio.sleep(args.warmup)
        for number in range(args.rounds):
            begin = time.monotonic()
            await asyncio.sleep(args.before)
            kill = time.monotonic()
            await asyncio.to_thread(redis.kill)
            profile = asyncio.create_task(_profile(pid, args.down, f"down-{number}")) if PROFILE else None
            await asyncio.sleep(args.down)
            restart = time.monotonic()
            await asyncio.to_thread(redis.start)
            await asyncio.sleep(args.after)
            run.outages.append((begin, kill, restart, time.monotonic()))
            if profile is not None:
                await profile


def _check(schema_name: str, run: Run) -> dict[str, int]:
    """The database row by row against what the clients were told."""
    events = sql(POSTGRES, f"SELECT action_id, user_id, delta FROM {schema_name}.score_events")
    scores = dict(sql(POSTGRES, f"SELECT user_id, score FROM {schema_name}.users"))
    recorded = {action_id: (user, int(delta)) for action_id, user, delta in events}
    from_events: Counter[str] = Counter()
    for user, delta in recorded.values():
        from_events[user] += delta
    acknowledged: Counter[str] = Counter()
    for user, delta in run.acknowledged.values():
        acknowledged[user] += delta
    return {
        "acknowledged": len(run.acknowledged), "event_rows": len(events), "users_checked": len(scores),
        "lost": sum(1 for action_id, row in run.acknowledged.items() if recorded.get(action_id) != row),
        "not_acknowledged_but_written": sum(1 for action_id in recorded if action_id not in run.acknowledged),
        "double_applied_users": sum(1 for user, score in scores.items()
                                    if score != from_events[user] or score != acknowledged[user]),
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _phases(run: Run) -> list[dict[str, Any]]:
    by_phase: dict[tuple[int, str], list[Attempt]] = defaultdict(list)
    for attempt in run.attempts:
        where = run.phase(attempt.sent)
        if where is not None:
            by_phase[where].append(attempt)
    rounds = []
    for number in range(len(run.outages)):
        row: dict[str, Any] = {}
        for name in PHASES:
            attempts = by_phase[(number, name)]
            seconds = [a.seconds * 1000 for a in attempts]
            row[name] = {"attempts": len(attempts), "p50_ms": round(_percentile(seconds, 0.5), 2),
                         "p99_ms": round(_percentile(seconds, 0.99), 2),
                         "statuses": dict(sorted(Counter(a.status for a in attempts).items()))}
        row["p50_ratio_during_vs_before"] = round(row["during"]["p50_ms"] / row["before"]["p50_ms"], 2)
        row["p99_ratio_during_vs_before"] = round(row["during"]["p99_ms"] / row["before"]["p99_ms"], 2)
        rounds.append(row)
    return rounds


def _median(rounds: list[dict[str, Any]], *path: str) -> float:
    values = []
    for row in rounds:
        value: Any = row
        for key in path:
            value = value[key]
        values.append(float(value))
    return round(statistics.median(values), 2)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(exist_ok=True)
    run = Run()
    with schema("bench_outage") as schema_name, redis_server() as redis:
        port = free_port()
        env = {**{key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")},
               "DATABASE_URL": f"{POSTGRES}?schema={schema_name}", "AUTO_MIGRATE": "0", "REDIS_URL": redis.url,
               "JWT_SECRET": SECRET, "HOST": "127.0.0.1", "PORT": str(port), "LOG_FORMAT": "json",
               "RATE_LIMIT_USER": "10000000/hour", "RATE_LIMIT_CALLER": "100000000/hour"}
        log = RESULTS / "redis-outage-service.log"
        with started([sys.executable, "-m", "app", "serve"], env, port, "/readyz", log) as service:
            await _outages(args, service.url, redis, service.pid, run)
        checks = _check(schema_name, run)
    rounds = _phases(run)
    all_statuses: Counter[int] = Counter(a.status for a in run.attempts)
    return {
        "rate": args.rate, "users": args.users, "rounds": rounds,
        "median": {f"{name}_{q}_ms": _median(rounds, name, f"{q}_ms") for name in PHASES for q in ("p50", "p99")}
        | {"p50_ratio_during_vs_before": _median(rounds, "p50_ratio_during_vs_before"),
           "p99_ratio_during_vs_before": _median(rounds, "p99_ratio_during_vs_before")},
        "increment_statuses": dict(sorted(all_statuses.items())),
        "increment_5xx_other_than_503": sum(n for status, n in all_statuses.items() if status >= 500 and status != 503),
        "committed_but_503": run.committed_but_503, "gave_up": run.gave_up,
        "read_statuses": dict(sorted(run.reads.items())), "reads_404_for_committed_user": run.reads_404_committed,
        "reads_below_acknowledged_score": run.reads_regressed, "database": checks,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench redis-outage", description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="increments started per second")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--before", type=float, default=8.0, help="seconds with Redis up before each kill")
    parser.add_argument("--down", type=float, default=8.0, help="seconds Redis stays down")
    parser.add_argument("--after", type=float, default=8.0, help="seconds after the restart")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args))
    document = {"generatedAt": datetime.now(UTC).isoformat(timespec="seconds"), "machine": _machine(),
                "loadavg": os.getloadavg(), **result}
    path = RESULTS / "redis-outage.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    print(f"written: {path}")
    return 0
