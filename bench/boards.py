"""`python -m bench boards`: the cost of one increment with 3 boards × 3 periods against one board.

Two services run side by side as `bench increments` starts them (gunicorn, 100,000 seeded users,
rate limits out of the way), each on its own fresh schema (and Redis prefix): the anchor has only
`main` with its `all` period (today's path); the other has `main`, `second` and `third`, each
with the periods `all`, `daily` and `weekly`, every action counting, so each increment writes
8 board_scores rows besides the user's. Per round and concurrency wrk posts new actionIds to
each in turn (the order alternates between rounds); cost ratio = anchor req/s ÷ boards req/s of
the same round, medians over the rounds. Run under `flock /tmp/scoreboard-bench.lock`.
Nobody reads a pair by default, so their rows stay in the database; `--watched` reads each pair
once first, so that every batch also returns its rows and writes all 8 read models in Redis.
"""
from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import redis

from app.auth.tokens import mint_token
from app.config import Settings
from bench import backends
from bench import increments as inc

PERIODS = ("all", "daily", "weekly")
EXTRA_BOARDS = ("second", "third")


def _configure(settings: Settings, schema: str | None) -> None:
    """main gets 3 periods, and two more boards with the same 3 periods: 9 (board, period) pairs."""
    if schema is None:
        path, periods = settings.database_url.removeprefix("sqlite:///"), '["all", "daily", "weekly"]'
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("UPDATE boards SET periods = ? WHERE board_id = 'main'", (periods,))
            conn.executemany("INSERT INTO boards (board_id, title, periods) VALUES (?, ?, ?)",
                             [(board, board.title(), periods) for board in EXTRA_BOARDS])
        return
    periods = "{" + ",".join(PERIODS) + "}"
    values = ", ".join(f"('{board}', '{board.title()}', '{periods}')" for board in EXTRA_BOARDS)
    backends._postgres(backends.Services.from_env().postgres_url,
                       f"UPDATE {schema}.boards SET periods = '{periods}' WHERE board_id = 'main'; "
                       f"INSERT INTO {schema}.boards (board_id, title, periods) VALUES {values}")


@contextlib.contextmanager
def _service(store: str, boards: bool, watched: bool = False) -> Iterator[tuple[str, str]]:
    """(url, token) of a running service on a fresh, seeded database; with the 9 pairs if `boards`,
    each read once first (so its read model is built and every batch writes it) if `watched`."""
    with inc._database(store) as (settings, schema):
        if boards:
            _configure(settings, schema)
        with inc._server(settings, 1) as url:
            token = mint_token(settings, sub="bench", scopes="scores:write", ttl=3600)
            if watched:
                _watch_every_pair(url, settings)
            inc._wrk(url, token, 8, 2)  # warm up
            yield url, token


def _watch_every_pair(url: str, settings: Settings) -> None:
    """Read each pair once (its build starts), then wait for the 8 pairs' marks in Redis: a figure
    called "every pair watched" must not be taken while some are not."""
    for board in ("main", *EXTRA_BOARDS):
        for period in PERIODS:
            with urllib.request.urlopen(f"{url}/boards/{board}/top?period={period}", timeout=10):
                pass
    if not settings.redis_url:  # the embedded store's read models live inside the server process
        return
    client = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + 30
    while len(client.keys(f"{settings.redis_prefix}pair:*:mark")) < 8:
        if time.monotonic() > deadline:
            raise SystemExit("bench: the pairs' read models were not built within 30 s")
        time.sleep(0.2)


def run(store: str, clients: tuple[int, ...], seconds: float, rounds: int, watched: bool = False) -> dict[str, Any]:
    rows: dict[int, dict[str, list[dict[str, Any]]]] = {c: {"one": [], "nine": []} for c in clients}
    with _service(store, False) as one, _service(store, True, watched) as nine:
        for number in range(rounds):
            for c in clients:
                order = (("one", one), ("nine", nine)) if number % 2 == 0 else (("nine", nine), ("one", one))
                for name, (url, token) in order:
                    rows[c][name].append(inc._wrk(url, token, c, seconds))
                print(f"bench: round {number + 1} c{c}: one board {rows[c]['one'][-1]['rps']:.0f} req/s, "
                      f"3x3 {rows[c]['nine'][-1]['rps']:.0f} req/s", file=sys.stderr)
    return {"store": store, "rounds": rounds, "seconds": seconds, "watched": watched,
            "concurrency": {str(c): _summary(row) for c, row in rows.items()}}


def _summary(row: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    ratios = [o["rps"] / n["rps"] for o, n in zip(row["one"], row["nine"], strict=True)]
    return {
        "one_board_rps_median": statistics.median(r["rps"] for r in row["one"]),
        "nine_pairs_rps_median": statistics.median(r["rps"] for r in row["nine"]),
        "one_board_p99_ms_median": statistics.median(r["p99_ms"] for r in row["one"]),
        "nine_pairs_p99_ms_median": statistics.median(r["p99_ms"] for r in row["nine"]),
        "cost_ratio_median": statistics.median(ratios), "cost_ratios": ratios,
        "failures": sum(r["non2xx"] + r["errors"] for r in row["one"] + row["nine"]),
        "rounds": row,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'store':<9}{'c':>5}{'1 board':>9}{'3x3':>9}{'p99 1':>8}{'p99 3x3':>9}{'cost':>7}{'fails':>7}"]
    for result in results:
        for c, row in result["concurrency"].items():
            lines.append(f"{result['store']:<9}{c:>5}{row['one_board_rps_median']:>9.0f}"
                         f"{row['nine_pairs_rps_median']:>9.0f}{row['one_board_p99_ms_median']:>8.1f}"
                         f"{row['nine_pairs_p99_ms_median']:>9.1f}{row['cost_ratio_median']:>6.2f}x"
                         f"{row['failures']:>7}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench boards", description=__doc__)
    parser.add_argument("--store", choices=["postgres", "sqlite"], action="append")
    parser.add_argument("--clients", default="16,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="boards")
    parser.add_argument("--watched", action="store_true",
                        help="read every pair once first: each batch then also writes all 8 pairs' read models")
    args = parser.parse_args(argv)
    clients = tuple(int(c) for c in args.clients.split(","))
    results = [run(store, clients, args.seconds, args.rounds, args.watched) for store in args.store or ["postgres"]]
    print(table(results))
    print(f"\nwritten: {inc.write(results, args.name)}")
    return 0
