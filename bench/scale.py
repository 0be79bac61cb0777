"""`python -m bench scale`: the read model at 1M and 10M users (issue 12).

For each size: users seeded by SQL (generate_series) into a fresh PostgreSQL schema, a
private redis-server on its own port (the shared one is never filled), the service started
as `python -m app`:
- cold: Redis empty. Time from start to correct reads (GET /scores equal to the database's
  rank for sampled users) and to a complete read model (the board's mark set, every user on it);
- intact: the service restarted `--rounds` times on the read model it built (the seeded rows
  and the rebuild are reused): time to correct reads after each start;
- GET /scores p99 (wrk, random users) while a repair of `--changes` users runs, against p99 with
  no repair running, measured in the same run, alternating, `--rounds` times; non-2xx counted;
- peak RSS of the service (the rebuilding one, and the restarted one) and Redis memory.
Everything seeded is dropped. Run it under `flock /tmp/scoreboard-bench.lock`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.backends import SECRET
from bench.private import POSTGRES, RedisServer, create_schema, drop_schema, free_port, sql
from bench.report import RESULTS, _machine

WAIT = 280.0  # seconds: the longest any phase may take
WRK_SECONDS = 4
KEPT = RESULTS / "scale-kept.json"  # what --keep left for --reuse
# BENCH_PROFILE=1: py-spy (from this venv) records the service during each repair
PROFILE = str(Path(sys.executable).parent / "py-spy") if os.environ.get("BENCH_PROFILE") else ""
WRK_SCRIPT = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/scores/u" .. math.random(1, {users}))
end
"""


@dataclass
class Point:
    users: int
    seed_seconds: float = 0.0
    cold_correct_reads_seconds: float = 0.0
    cold_complete_seconds: float = 0.0
    intact_correct_reads_seconds: list[float] = field(default_factory=list)  # one per restart
    rss_cold_mb: float = 0.0  # peak of the process that rebuilt the read model
    rss_mb: float = 0.0  # peak of the process restarted on it, after the repair rounds
    redis_used_mb: float = 0.0
    complete_users_on_board: int = 0  # when the budget ended the rebuild early: how far it got
    complete_extrapolated: bool = False
    repair_changes: int = 0
    repair_seconds: list[float] = field(default_factory=list)
    p99_idle_ms: list[float] = field(default_factory=list)
    p99_repair_ms: list[float] = field(default_factory=list)
    non_2xx: int = 0

    def summary(self) -> dict[str, Any]:
        intact = self.intact_correct_reads_seconds
        intact_median = statistics.median(intact) if intact else None
        if not self.p99_idle_ms:
            return {**asdict(self), "intact_correct_reads_median_seconds": intact_median}
        idle, busy = statistics.median(self.p99_idle_ms), statistics.median(self.p99_repair_ms)
        # each round's repair against the idle run just before it: less exposed to load drifting over the run
        per_round = [round(b / i, 3) for i, b in zip(self.p99_idle_ms, self.p99_repair_ms, strict=True)]
        return {**asdict(self), "intact_correct_reads_median_seconds": intact_median,
                "p99_idle_median_ms": idle, "p99_repair_median_ms": busy,
                "p99_ratio_repair_vs_idle": round(busy / idle, 3), "p99_ratio_per_round": per_round,
                "p99_ratio_per_round_median": round(statistics.median(per_round), 3)}


def _seed(schema: str, users: int) -> float:
    started = time.monotonic()
    sql(POSTGRES, f"""
        INSERT INTO {schema}.users (user_id, display_name, score, seq)
        SELECT 'u' || g, 'player ' || g, (hashint4(g) & 1048575)::bigint, g FROM generate_series(1, {users}) AS g;
        SELECT setval('{schema}.score_seq', {users} + 1);
        ANALYZE {schema}.users""")
    return time.monotonic() - started


class Service:
    """`python -m app` on a free port, with its output in a log file."""

    def __init__(self, schema: str, redis_url: str, log: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, "DATABASE_URL": f"{POSTGRES}?schema={schema}", "AUTO_MIGRATE": "0",
                    "REDIS_URL": redis_url, "REDIS_PREFIX": "scale:",
                    "JWT_SECRET": SECRET, "PORT": str(self.port), "RECONCILE_INTERVAL": "2"}
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> float:
        with open(self.log, "ab") as out:  # noqa: ASYNC230 - once per start
            self.process = await asyncio.create_subprocess_exec(sys.executable, "-m", "app", env=self.env,
                                                                stdout=out, stderr=out)
        return time.monotonic()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)

    def rss_mb(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]


async def _raw(port: int, path: str) -> bytes:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return b""
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return await reader.read()
    except OSError:
        return b""
    finally:
        writer.close()


async def _get(port: int, path: str) -> tuple[int, Any]:
    head, _, body = (await _raw(port, path)).partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    return status, json.loads(body) if body.startswith(b"{") else None


def _truth(schema: str, user_ids: list[str]) -> dict[str, tuple[int, int]]:
    """user -> (score, rank) computed by the database itself."""
    rows = sql(POSTGRES, f"""
        SELECT u.user_id, u.score, 1 + (SELECT count(*) FROM {schema}.users o WHERE o.deleted_at IS NULL
            AND (o.score > u.score OR (o.score = u.score AND o.seq < u.seq)))
        FROM {schema}.users u WHERE u.user_id IN ({", ".join(f"'{u}'" for u in user_ids)})""")
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


async def _until_correct(port: int, truth: dict[str, tuple[int, int]], started: float) -> float:
    while time.monotonic() - started < WAIT:
        answers = [await _get(port, f"/scores/{user}") for user in truth]
        if all(status == 200 and (body["score"], body["rank"]) == truth[user]
               for (status, body), user in zip(answers, truth, strict=True)):
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise TimeoutError("reads never became correct")


async def _until_complete(redis_port: int, users: int, started: float, budget: float) -> tuple[float, int]:
    """Seconds until the board is complete, and how many users it holds then; when the budget ends
    first, the time it would take at the rate so far (extrapolated) and how many it holds."""
    client = redis.asyncio.Redis(port=redis_port)
    try:
        while True:
            on_board = await client.zcard("scale:board")
            elapsed = time.monotonic() - started
            if on_board >= users and await client.exists("scale:mark"):
                return elapsed, on_board
            if elapsed > budget:
                return (elapsed * users / on_board if on_board else float("inf")), on_board
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def _wrk(port: int, users: int, script: Path) -> tuple[float, int]:
    """p99 in ms and non-2xx count of WRK_SECONDS of random GET /scores."""
    script.write_text(WRK_SCRIPT.format(users=users))  # noqa: ASYNC240 - a few bytes
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t1", "-c8", f"-d{WRK_SECONDS}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE)
    out = (await process.communicate())[0].decode()
    match = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    if match is None:
        raise RuntimeError(f"no p99 in wrk's output:\n{out}")
    p99 = float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match[2]]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return p99, int(errors[1]) if errors else 0


async def _repaired(port: int) -> float:
    """The service's count of change-feed rows applied by repairs."""
    text = (await _raw(port, "/metrics")).decode(errors="replace")
    match = re.search(r'scoreboard_read_model\{counter="repaired"\} ([\d.e+]+)', text)
    return float(match[1]) if match else 0.0


async def _profile(pid: int, name: str) -> None:
    """py-spy over the service while a repair runs (BENCH_PROFILE=1): raw stacks in bench/results/."""
    process = await asyncio.create_subprocess_exec(
        PROFILE, "record", "-p", str(pid), "-d", str(WRK_SECONDS), "-f", "raw", "-o",
        str(RESULTS / f"scale-{name}.txt"), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await process.wait()


async def _repair_round(point: Point, schema: str, port: int, pid: int, script: Path, round_no: int) -> None:
    """p99 with no repair, then p99 while a repair of `repair_changes` users runs."""
    p99, errors = await _wrk(port, point.users, script)
    point.p99_idle_ms.append(p99)
    point.non_2xx += errors
    before = await _repaired(port)
    first = 1 + round_no * point.repair_changes % point.users
    # as an increment does: a new score with a new seq (the read model takes only newer seqs)
    sql(POSTGRES, f"UPDATE {schema}.users SET score = score + 1, seq = nextval('{schema}.score_seq') WHERE user_id IN "
                   f"(SELECT 'u' || g FROM generate_series({first}, {first + point.repair_changes - 1}) AS g)")
    started = time.monotonic()
    wrk = asyncio.create_task(_wrk(port, point.users, script))
    profile = asyncio.create_task(_profile(pid, f"repair-{round_no}")) if PROFILE else None
    while await _repaired(port) < before + point.repair_changes and time.monotonic() - started < WAIT:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    point.repair_seconds.append(round(time.monotonic() - started, 2))
    await _until_correct(port, _truth(schema, [f"u{first}"]), time.monotonic())  # repaired, not only counted
    p99, errors = await wrk
    if profile is not None:
        await profile
    point.p99_repair_ms.append(p99)
    point.non_2xx += errors


async def measure(users: int, changes: int, rounds: int, budget: float, keep: bool, reuse: bool) -> Point:
    """With `reuse`, on the schema and read model an earlier `keep` run left (no seed, no cold start)."""
    RESULTS.mkdir(exist_ok=True)
    if reuse:
        kept = json.loads(KEPT.read_text())
        users, name, server = kept["users"], kept["schema"], RedisServer(kept["redis_port"], kept["redis_pid"])
        if not redis.Redis(port=server.port).exists("scale:mark"):
            raise SystemExit(f"the read model kept in {KEPT} is gone: run with --keep again")
    else:
        name, server = create_schema("bench_scale"), RedisServer()
        server.start()
    point = Point(users=users, repair_changes=changes)
    log, script = RESULTS / f"scale-{users}.log", RESULTS / "scale-scores.lua"
    service = Service(name, server.url, log)
    try:
        truth = await _prepare(point, name, service, server, budget, reuse)
        if point.complete_extrapolated:  # stay within the lock's time: the rest needs a complete board
            return point
        # the seeded rows and the rebuilt read model are reused: only the service restarts
        for _ in range(rounds):
            await service.stop()
            started = await service.start()
            point.intact_correct_reads_seconds.append(round(await _until_correct(service.port, truth, started), 2))
            print(f"scale: {users} users, intact start: correct reads after "
                  f"{point.intact_correct_reads_seconds[-1]} s", file=sys.stderr, flush=True)
        for round_no in range(rounds):
            assert service.process is not None
            await _repair_round(point, name, service.port, service.process.pid, script, round_no)
        point.rss_mb = round(service.rss_mb(), 1)
        point.redis_used_mb = round(server.used_memory_mb(), 1)
    finally:
        await service.stop()
        if keep and not point.complete_extrapolated:
            KEPT.write_text(json.dumps({"users": users, "schema": name, "redis_port": server.port,
                                        "redis_pid": server.pid}))
        else:
            server.kill()
            drop_schema(name)
            KEPT.unlink(missing_ok=True)
    return point


async def _prepare(point: Point, name: str, service: Service, server: RedisServer, budget: float,
                   reuse: bool) -> dict[str, tuple[int, int]]:
    """Seed and build the read model with a cold start (unless reused); the sampled users' truth."""
    if not reuse:
        point.seed_seconds = round(_seed(name, point.users), 1)
        print(f"scale: {point.users} users seeded in {point.seed_seconds} s", file=sys.stderr, flush=True)
    truth = _truth(name, [f"u{n}" for n in (1, point.users // 2, point.users)])
    if not reuse:
        await _cold(point, service, server, truth, budget)
    else:
        await service.start()
    return truth


async def _cold(point: Point, service: Service, server: RedisServer, truth: dict[str, tuple[int, int]],
                budget: float) -> None:
    """Start on an empty Redis: until reads are correct, then until the read model is complete."""
    started = await service.start()
    point.cold_correct_reads_seconds = round(await _until_correct(service.port, truth, started), 2)
    complete, point.complete_users_on_board = await _until_complete(server.port, point.users, started, budget)
    point.cold_complete_seconds = round(complete, 1)
    point.complete_extrapolated = point.complete_users_on_board < point.users
    point.rss_cold_mb = round(service.rss_mb(), 1)
    point.redis_used_mb = round(server.used_memory_mb(), 1)
    print(f"scale: {point.users} users, cold start: correct reads after {point.cold_correct_reads_seconds} s, "
          f"complete after {point.cold_complete_seconds} s", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--changes", type=int, default=100_000, help="users changed per measured repair")
    parser.add_argument("--rounds", type=int, default=3, help="restarts on the intact read model, and repairs")
    parser.add_argument("--budget", type=float, default=WAIT,
                        help="seconds to wait for a complete read model; past it, extrapolate and stop")
    parser.add_argument("--keep", action="store_true",
                        help=f"leave the seeded schema and the read model's Redis running for --reuse (in {KEPT})")
    parser.add_argument("--reuse", action="store_true",
                        help="measure on what --keep left: no seed, no cold start; removed after unless --keep")
    args = parser.parse_args(argv)
    if args.keep and len(args.users) > 1:
        parser.error("--keep keeps one size")
    sizes = [0] if args.reuse else args.users
    points = [asyncio.run(measure(users, args.changes, args.rounds, args.budget, args.keep, args.reuse))
              for users in sizes]
    document = {"generatedAt": datetime.now(UTC).isoformat(timespec="seconds"), "machine": _machine(),
                "points": [point.summary() for point in points]}
    path = RESULTS / "scale.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document["points"], indent=2))
    print(f"written: {path}")
    return 0
