"""`python -m bench hotread`: GET /top with wrk against the service and a trivial aiohttp app serving the same bytes.

The service runs as `python -m app` on PostgreSQL + Redis with default settings (access log on);
the anchor is bench/trivial.py returning the very bytes the service returned. Both are measured
in the same run, interleaved over rounds; the figures are medians and ratios to the anchor.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import procs
from bench.backends import Services
from bench.output import write_named


def main(argv: list[str]) -> int:
    where = Services.from_env()
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-hotread-") as tmp:
        workdir = Path(tmp)
        with procs.service(where, workdir, workers=args.workers) as service:
            procs.seed(service.url, 30)
            body, headers = procs.fetch(f"{service.url}/top")
            with procs.trivial(body, workdir) as anchor:
                results = {c: _measure(service, anchor, c, args) for c in args.connections}
    report = {"bodyBytes": len(body), "rounds": args.rounds, "seconds": args.seconds, "workers": args.workers,
              "results": results}
    print(_table(report))
    print(f"written: {write_named(args.name, report, _plot)}", file=sys.stderr)
    return 0


def _measure(service: procs.Process, anchor: procs.Process, connections: int, args: argparse.Namespace
             ) -> dict[str, Any]:
    rounds: dict[str, list[procs.WrkResult]] = {"service": [], "trivial": []}
    for _ in range(args.rounds):  # interleaved, so a busy moment hits both alike
        for name, process in (("service", service), ("trivial", anchor)):
            procs.wrk(f"{process.url}/top", connections, 1.0)  # warm up
            rounds[name].append(procs.wrk(f"{process.url}/top", connections, args.seconds))
    medians = {name: _medians(results) for name, results in rounds.items()}
    medians["ratio"] = {
        "throughput": medians["service"]["rps"] / medians["trivial"]["rps"],
        "p99": medians["service"]["p99Ms"] / medians["trivial"]["p99Ms"],
    }
    return medians


def _medians(results: list[procs.WrkResult]) -> dict[str, Any]:
    return {
        "rps": statistics.median(r.requests_per_second for r in results),
        "p50Ms": statistics.median(r.p50_ms for r in results),
        "p99Ms": statistics.median(r.p99_ms for r in results),
        "errors": sum(r.errors for r in results),
        "rounds": [r.requests_per_second for r in results],
    }


def _table(report: dict[str, Any]) -> str:
    lines = [f"GET /top ({report['bodyBytes']} bytes), service with {report['workers']} worker(s), wrk -t1, "
             f"medians of {report['rounds']} rounds",
             f"{'conns':>6} {'service req/s':>14} {'trivial req/s':>14} {'ratio':>6} "
             f"{'p99 svc':>9} {'p99 triv':>9} {'p99 ratio':>9}"]
    for connections, row in report["results"].items():
        lines.append(f"{connections:>6} {row['service']['rps']:>14.0f} {row['trivial']['rps']:>14.0f} "
                     f"{row['ratio']['throughput']:>6.2f} {row['service']['p99Ms']:>8.2f}ms "
                     f"{row['trivial']['p99Ms']:>8.2f}ms {row['ratio']['p99']:>9.2f}")
    return "\n".join(lines)


def _plot(report: dict[str, Any], axes: Any) -> None:
    conns = list(report["results"])
    width = 0.35
    for offset, name in ((-width / 2, "service"), (width / 2, "trivial")):
        axes.bar([i + offset for i in range(len(conns))], [report["results"][c][name]["rps"] for c in conns],
                 width, label=name)
    axes.set_xticks(range(len(conns)), [f"c{c}" for c in conns])
    axes.set_ylabel("GET /top req/s (median)")
    axes.legend()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench hotread", description=__doc__)
    parser.add_argument("--connections", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="service worker processes (gunicorn when > 1)")
    parser.add_argument("--name", default="hotread", help="results file name under bench/results/")
    return parser
