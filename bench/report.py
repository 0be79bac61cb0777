"""The table on the terminal and bench/results/latest.json."""
from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.run import BackendResult, Options, Row

RESULTS = Path(__file__).resolve().parent / "results"
HEADER = f"{'backend':<15} {'endpoint':<40} {'req/s':>9} {'× baseline':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"


def table(results: dict[str, BackendResult], skipped: dict[str, str], options: Options) -> str:
    lines = [HEADER, "-" * len(HEADER)]
    for backend, result in results.items():
        lines += [_line(backend, row) for row in result.rows]
    lines += [f"{backend:<15} skipped: {reason}" for backend, reason in skipped.items()]
    if options.rounds > 1:
        lines += [f"baseline spread across rounds, {backend}: {result.baseline_spread:.0%} (machine noise; "
                  "ratios closer than this are not different)" for backend, result in results.items()]
    return "\n".join(lines)


def _line(backend: str, row: Row) -> str:
    m = row.measurement
    return (f"{backend:<15} {row.endpoint:<40} {m.rps:>9.0f} {row.ratio:>11.2f} "
            f"{m.percentile_ms(50):>8.2f} {m.percentile_ms(99):>8.2f} {m.errors:>7}")


def write_json(results: dict[str, BackendResult], skipped: dict[str, str], options: Options) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latest.json"
    document = {
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "options": {"clients": options.clients, "seconds": options.seconds, "warmup": options.warmup,
                    "rounds": options.rounds},
        "backends": {backend: _backend(result) for backend, result in results.items()},
        "skipped": skipped,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _backend(result: BackendResult) -> dict[str, Any]:
    baseline, *calls = result.rows
    return {
        "baseline": {"endpoint": baseline.endpoint, "spread": round(result.baseline_spread, 3),
                     **baseline.measurement.summary()},
        "endpoints": {row.endpoint: {"ratio": round(row.ratio, 3), **row.measurement.summary()} for row in calls},
    }


def _machine() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "aiohttp": version("aiohttp")}
