"""`python -m bench increments`: POST /scores/increment under wrk against pgbench's ceiling, same run.

The service runs as the Procfile starts it (gunicorn, aiohttp worker, `--workers N`), the rate
limits raised out of the way; wrk posts a new actionId each time over 100,000 seeded users. The
anchor is pgbench running the increment's SQL as one transaction per increment (the statements the
service ran before group commit) against the same schema, at the same concurrency, in the same
round. Rounds interleave anchor and service, in alternating order; the report gives medians. Run under
`flock /tmp/scoreboard-bench.lock`.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.auth.tokens import mint_token
from app.config import Settings
from app.store.migrations import migrate
from bench import backends
from bench.report import RESULTS, _machine

USERS = 100_000
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The increment as one transaction, as the service ran it before group commit.
PGBENCH_SCRIPT = """\\set uid random(1, 100000)
BEGIN;
INSERT INTO users (user_id) VALUES ('u' || :uid) ON CONFLICT (user_id) DO NOTHING;
SELECT score, deleted_at IS NOT NULL, display_name FROM users WHERE user_id = 'u' || :uid FOR UPDATE;
INSERT INTO score_events (action_id, user_id, action, delta, score_after, caller)
  SELECT md5(random()::text || clock_timestamp()::text), user_id, 'complete', 10, score + 10, 'bench'
  FROM users WHERE user_id = 'u' || :uid ON CONFLICT (action_id) DO NOTHING RETURNING id;
UPDATE users SET score = score + 10, seq = currval('score_seq') WHERE user_id = 'u' || :uid;
COMMIT;
"""
WRK_SCRIPT = """
local counter, nonce = 0, ""
local token = os.getenv("BENCH_TOKEN")
function setup(thread) thread:set("id", tostring(math.random(1, 1e9))) end
function init(args) nonce = id .. "-" .. os.time() end
function request()
  counter = counter + 1
  local body = '{"userId":"u' .. math.random(1, 100000) .. '","actionId":"' .. nonce .. '-' .. counter .. '"}'
  return wrk.format("POST", "/scores/increment",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
function done(summary, latency, requests)
  io.write(string.format('JSON{"requests":%d,"seconds":%f,"p50":%d,"p99":%d,"non2xx":%d,"errors":%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


@dataclass(frozen=True)
class Config:
    store: str  # postgres | sqlite
    workers: int
    clients: tuple[int, ...]
    seconds: float
    rounds: int


def run(config: Config) -> dict[str, Any]:
    with _database(config.store) as (settings, schema):
        rows = {c: {"service": [], "pgbench": []} for c in config.clients}  # type: dict[int, dict[str, list[Any]]]
        with _server(settings, config.workers) as url:
            token = mint_token(settings, sub="bench", scopes="scores:write", ttl=3600)
            _wrk(url, token, 8, 2)  # warm up: connections, caches, JIT-free but page cache
            _wait_read_model(url)
            for number in range(config.rounds):
                for clients in config.clients:
                    # The order alternates by round: whichever runs second inherits the first's
                    # dead rows (autovacuum) and dirty pages (checkpoint).
                    anchor_first = number % 2 == 0
                    if schema is not None and anchor_first:
                        rows[clients]["pgbench"].append(_pgbench(settings, schema, clients, config.seconds))
                    rows[clients]["service"].append(_wrk(url, token, clients, config.seconds))
                    if schema is not None and not anchor_first:
                        rows[clients]["pgbench"].append(_pgbench(settings, schema, clients, config.seconds))
                    print(f"bench: round {number + 1} c{clients}: {_brief(rows[clients])}", file=sys.stderr)
    return {"store": config.store, "workers": config.workers, "rounds": config.rounds, "seconds": config.seconds,
            "concurrency": {str(c): _summary(r) for c, r in rows.items()}}


def _brief(row: dict[str, list[Any]]) -> str:
    service = row["service"][-1]
    anchor = f", pgbench {row['pgbench'][-1]:.0f} TPS" if row["pgbench"] else ""
    return f"service {service['rps']:.0f} req/s p99 {service['p99_ms']:.1f} ms{anchor}"


def _summary(row: dict[str, list[Any]]) -> dict[str, Any]:
    service = row["service"]
    out: dict[str, Any] = {
        "service_rps_median": statistics.median(s["rps"] for s in service),
        "service_p99_ms_median": statistics.median(s["p99_ms"] for s in service),
        "service_p50_ms_median": statistics.median(s["p50_ms"] for s in service),
        "failures": sum(s["non2xx"] + s["errors"] for s in service),
        "rounds": service,
    }
    if row["pgbench"]:
        out["pgbench_tps_median"] = statistics.median(row["pgbench"])
        out["pgbench_rounds"] = row["pgbench"]
        ratios = [s["rps"] / p for s, p in zip(service, row["pgbench"], strict=True)]
        out["ratio_median"] = statistics.median(ratios)
        out["ratios"] = ratios
    return out


@contextlib.contextmanager
def _database(store: str) -> Iterator[tuple[Settings, str | None]]:
    if store == "sqlite":
        with backends.embedded() as settings:
            migrate(settings.database_url)
            _seed_sqlite(settings.database_url.removeprefix("sqlite:///"))
            yield settings, None
        return
    where = backends.Services.from_env()
    with backends.services(where) as settings:
        migrate(settings.database_url)
        schema = settings.database_url.rsplit("schema=", 1)[1]
        backends._postgres(where.postgres_url, f"INSERT INTO {schema}.users (user_id) "
                           f"SELECT 'u' || g FROM generate_series(1, {USERS}) AS g; ANALYZE {schema}.users")
        yield settings, schema


def _seed_sqlite(path: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany("INSERT INTO users (user_id, seq) VALUES (?, ?)", ((f"u{i}", i) for i in range(1, USERS + 1)))
        conn.execute("UPDATE score_seq SET value = ?", (USERS,))


@contextlib.contextmanager
def _server(settings: Settings, workers: int) -> Iterator[str]:
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(DATABASE_URL=settings.database_url, JWT_SECRET=settings.jwt_secret or "",
               RATE_LIMIT_USER="100000000/hour", RATE_LIMIT_CALLER="1000000000/hour", WEB_CONCURRENCY=str(workers),
               AUTO_MIGRATE="0", LOG_FORMAT="json")
    if settings.redis_url:
        env.update(REDIS_URL=settings.redis_url, REDIS_PREFIX=settings.redis_prefix)
    env.update({k: v for k, v in os.environ.items() if k in ("BATCH_WINDOW", "BATCH_MAX")})
    command = [str(BIN / "gunicorn"), "app.gunicorn:app", "--worker-class", "aiohttp.GunicornWebWorker",
               "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--no-control-socket"]
    log = open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the service exited at start")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + "/healthz", timeout=2).close()
            return
        time.sleep(0.1)
    raise RuntimeError("the service did not become healthy")


def _wait_read_model(url: str) -> None:
    """Until the read model's first pass (its rebuild over the seeded users) has run: else the
    first round measures the increments beside a rebuild of 100,000 users."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
            runs = re.search(rb'^scoreboard_read_model\{counter="runs"\} ([0-9.e+]+)$', answer.read(), re.M)
            if runs is not None and float(runs[1]) >= 1:
                return
        time.sleep(0.5)
    raise RuntimeError("the read model was not built within 120 s")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wrk(url: str, token: str, clients: int, seconds: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", str(clients), "-d", f"{seconds:.0f}s", "--timeout", "5s", "-s", script.name, url],
            env={**os.environ, "BENCH_TOKEN": token}, capture_output=True, text=True, timeout=seconds + 60, check=True)
    finally:
        os.unlink(script.name)
    found = re.search(r"JSON(\{.*\})", out.stdout)
    if found is None:
        raise RuntimeError(f"wrk printed no summary: {out.stdout} {out.stderr}")
    raw = json.loads(found[1])
    return {"rps": raw["requests"] / raw["seconds"], "p50_ms": raw["p50"] / 1000, "p99_ms": raw["p99"] / 1000,
            "non2xx": raw["non2xx"], "errors": raw["errors"], "requests": raw["requests"]}


def _pgbench(settings: Settings, schema: str, clients: int, seconds: float) -> float:
    base = settings.database_url.split("?", 1)[0]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT)
    try:
        out = subprocess.run(
            ["pgbench", "-n", "-M", "prepared", "-f", script.name, "-c", str(clients), "-j", "2",
             "-T", f"{seconds:.0f}", base],
            env={**os.environ, "PGOPTIONS": f"-c search_path={schema}"}, capture_output=True, text=True,
            timeout=seconds + 60, check=True)
    finally:
        os.unlink(script.name)
    found = re.search(r"tps = ([0-9.]+)", out.stdout)
    if found is None:
        raise RuntimeError(f"pgbench printed no tps: {out.stdout} {out.stderr}")
    return float(found[1])


def write(results: list[dict[str, Any]], name: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"generatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                "machine": _machine(), "runs": results}, indent=2) + "\n")
    return path


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'store':<9}{'workers':>8}{'c':>5}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'pgbench':>9}{'ratio':>7}"
             f"{'fails':>7}"]
    for run_ in results:
        for clients, row in run_["concurrency"].items():
            anchor = row.get("pgbench_tps_median")
            ratio = f"{row['ratio_median']:.2f}" if anchor else "-"
            lines.append(
                f"{run_['store']:<9}{run_['workers']:>8}{clients:>5}{row['service_rps_median']:>9.0f}"
                f"{row['service_p50_ms_median']:>8.1f}{row['service_p99_ms_median']:>8.1f}"
                f"{(f'{anchor:.0f}' if anchor else '-'):>9}"
                f"{ratio:>7}{row['failures']:>7}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench increments", description=__doc__)
    parser.add_argument("--store", choices=["postgres", "sqlite"], action="append")
    parser.add_argument("--workers", type=int, action="append", help="gunicorn workers (PostgreSQL only for 2+)")
    parser.add_argument("--clients", default="8,16,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="increments")
    args = parser.parse_args(argv)
    clients = tuple(int(c) for c in args.clients.split(","))
    configs = [Config(store, workers, clients, args.seconds, args.rounds)
               for store in args.store or ["postgres", "sqlite"] for workers in args.workers or [1]
               if store == "postgres" or workers == 1]
    results = [run(config) for config in configs]
    print(table(results))
    print(f"\nwritten: {write(results, args.name)}")
    return 0

