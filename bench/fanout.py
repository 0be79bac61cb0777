"""`python -m bench fanout`: N open streams while the top 10 keeps changing, against nginx + nchan.

The service (PostgreSQL + Redis, default settings except STREAM_MAX_PER_CLIENT, since every
stream comes from 127.0.0.1) gets increments at a steady rate, so every push interval has a
change; nchan (1 worker) gets a message of the same size published at 4 Hz. The SSE clients
(bench/sseclient.py) run in several processes. Per point: delivered = updates received ÷
(N × 4 Hz × window), latency from each update's ts, server CPU over the window, RSS per stream.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import procs
from bench.backends import Services
from bench.nchan import nchan, publish
from bench.output import write_named

RATE_HZ = 4.0  # the contract's ceiling per stream (PUSH_INTERVAL 0.25 s), and nchan's publish rate
# Paced, not random: every push interval holds three increments, each to a top-10 user.
INCREMENTS_PER_SECOND = 12
DRIVER_THREADS = 4


def main(argv: list[str]) -> int:
    where = Services.from_env()
    args = _parser().parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        workdir = Path(tmp)
        with procs.service(where, workdir, workers=args.workers) as service, nchan(workdir) as anchor:
            procs.seed(service.url, 30)
            body, _ = procs.fetch(f"{service.url}/top")
            for streams in args.streams:
                for round_ in range(args.rounds):
                    for name, target in _targets(service, anchor, body, args.workers):
                        print(f"fanout: {name} {streams} streams, round {round_ + 1}", file=sys.stderr, flush=True)
                        point = _point(target, streams, args)
                        results.setdefault(str(streams), {}).setdefault(name, []).append(point)
                        time.sleep(2)  # let the closed connections go
    report = {"window": args.window, "clients": args.clients, "workers": args.workers, "rounds": args.rounds,
              "points": {n: {name: _median(rows) for name, rows in by.items()} for n, by in results.items()}}
    print(_table(report))
    print(f"written: {write_named(args.name, report, _plot)}", file=sys.stderr)
    return 0


class Target:
    def __init__(self, process: procs.Process, path: str, change: Callable[[], None], pids: Callable[[], list[int]]):
        self.process, self.path, self.change, self.pids = process, path, change, pids


def _targets(service: procs.Process, anchor: procs.Process, body: bytes, workers: int) -> list[tuple[str, Target]]:
    bearer = procs.token()
    users = [f"user-{i:04d}" for i in range(2, 30, 3)]  # the seeded top 10 (procs.seed): every increment shows

    def increment() -> None:
        procs.post_json(f"{service.url}/scores/increment", {"userId": random.choice(users),
                                                            "actionId": uuid.uuid4().hex}, bearer)

    def message() -> None:
        publish(anchor.port, b'%s,"ts":%d}' % (body[:-1], int(time.time() * 1000)))

    def service_pids() -> list[int]:
        return [service.pid, *procs.children(service.pid)] if workers > 1 else [service.pid]

    return [("service", Target(service, "/stream", increment, service_pids)),
            ("nchan", Target(anchor, "/sub", message, lambda: [anchor.pid]))]


def _point(target: Target, streams: int, args: argparse.Namespace) -> dict[str, Any]:
    rss_before = sum(procs.rss_bytes(pid) for pid in target.pids())
    shares = [streams // args.clients + (i < streams % args.clients) for i in range(args.clients)]
    clients = [_client(target, share) for share in shares]
    for client in clients:  # every stream open before the window: connecting is not measured
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
    start = time.time() + 1.5
    end = start + args.window
    for client in clients:
        assert client.stdin is not None
        client.stdin.write(f"{start} {end}\n")
        client.stdin.flush()
    rate = INCREMENTS_PER_SECOND if target.path == "/stream" else RATE_HZ
    changes: list[float] = []
    driver = threading.Thread(target=_drive, args=(target.change, rate, start - 1, end + 0.5, changes))
    driver.start()
    time.sleep(max(0.0, start - time.time()))
    cpu_start = sum(procs.cpu_seconds(pid) for pid in target.pids())
    time.sleep(args.window / 2)
    rss = sum(procs.rss_bytes(pid) for pid in target.pids())
    open_files = {pid: procs.open_files(pid) for pid in target.pids()}  # how the streams spread over workers
    time.sleep(max(0.0, end - time.time()))
    cpu = sum(procs.cpu_seconds(pid) for pid in target.pids()) - cpu_start
    outputs = [json.loads(client.communicate(timeout=120)[0].splitlines()[-1]) for client in clients]
    driver.join()
    latencies = sorted(x for out in outputs for x in out["latencies"])
    total = sum(out["streams"] for out in outputs)
    return {
        "streams": total, "held": sum(out["heldAtEnd"] for out in outputs),
        "delivered": sum(out["counted"] for out in outputs) / (total * RATE_HZ * args.window),
        "p50Ms": _pct(latencies, 50), "p95Ms": _pct(latencies, 95), "p99Ms": _pct(latencies, 99),
        "maxMs": latencies[-1] if latencies else None,
        "changesPerSecond": len(changes) / (end + 1.5 - start),
        "changeMaxMs": max(changes, default=0) * 1000,
        "pushesPerSecond": len({ts for out in outputs for ts in out["pushes"]}) / args.window,
        "serverCpu": cpu / args.window,
        "rssPerStreamKb": (rss - rss_before) / total / 1024,
        "openFilesByProcess": list(open_files.values()),
        "clientCpuSeconds": sum(o["cpuSeconds"] for o in outputs),
    }


def _client(target: Target, streams: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.sseclient", str(target.process.port), target.path,
                             str(streams)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=procs.ROOT)


def _drive(change: Callable[[], None], rate: float, start: float, end: float, done: list[float]) -> None:
    """Start `change` at a steady `rate` from `start` to `end` (bounded by the clock), on a few
    threads, so that one slow call does not hold back the ones after it."""

    def timed() -> None:
        began = time.time()
        change()
        done.append(time.time() - began)

    time.sleep(max(0.0, start - time.time()))
    with ThreadPoolExecutor(DRIVER_THREADS) as pool:
        n = 0
        while time.time() < end:
            pool.submit(timed)
            n += 1
            time.sleep(max(0.0, start + n / rate - time.time()))


def _pct(values: list[float], percent: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * percent / 100))]


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    lists = {k: rows[-1][k] for k in rows[0] if isinstance(rows[0][k], list)}
    out = {k: statistics.median(r[k] for r in rows if r[k] is not None) for k in keys}
    out["rounds"] = len(rows)
    # Memory is measured on the first round only: later rounds reuse what the first one grew.
    out["rssPerStreamKb"] = rows[0]["rssPerStreamKb"]
    return {**out, **lists, "eachRound": [{k: r[k] for k in keys} for r in rows]}


def _table(report: dict[str, Any]) -> str:
    lines = [f"fan-out, {report['window']} s window, {report['workers']} worker(s), "
             f"medians of {report['rounds']} rounds",
             f"{'N':>6} {'target':>8} {'held':>6} {'deliv':>6} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} "
             f"{'cpu':>5} {'KB/str':>7}"]
    for n, by in report["points"].items():
        for name, row in by.items():
            lines.append(f"{n:>6} {name:>8} {row['held']:>6.0f} {row['delivered']:>6.1%} {row['p50Ms']:>7.1f} "
                         f"{row['p95Ms']:>7.1f} {row['p99Ms']:>7.1f} {row['maxMs']:>7.1f} {row['serverCpu']:>5.0%} "
                         f"{row['rssPerStreamKb']:>7.1f}")
        if {"service", "nchan"} <= set(by):
            s, a = by["service"], by["nchan"]
            lines.append(f"{'':>6} {'ratio':>8} p99 {s['p99Ms'] / a['p99Ms']:.2f}x, cpu "
                         f"{s['serverCpu'] / max(a['serverCpu'], 1e-9):.2f}x")
    return "\n".join(lines)


def _plot(report: dict[str, Any], axes: Any) -> None:
    ns = list(report["points"])
    for name in ("service", "nchan"):
        axes.plot([int(n) for n in ns], [report["points"][n][name]["p99Ms"] for n in ns], marker="o",
                  label=f"{name} p99 ms")
    axes.set_xlabel("open streams")
    axes.set_ylabel("p99 latency from ts (ms)")
    axes.legend()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench fanout", description=__doc__)
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per point")
    parser.add_argument("--clients", type=int, default=3, help="SSE client processes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="service worker processes (gunicorn when > 1)")
    parser.add_argument("--name", default="fanout", help="results file name under bench/results/")
    return parser
