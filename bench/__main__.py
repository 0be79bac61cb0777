"""`python -m bench`: every scenario on every reachable backend pair, one table, bench/results/latest.json."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager

from app.config import Settings
from bench import backends
from bench.report import table, write_json
from bench.run import BackendResult, Options, run_backend

Setup = Callable[[], AbstractContextManager[Settings]]

# Benchmarks of their own (`python -m bench NAME --help`), each bench/<module>.py with a main(argv);
# no name runs the suite below.
SUBCOMMANDS = {
    "hotread": "bench.hotread", "fanout": "bench.fanout", "screen": "bench.screen",
    "increments": "bench.increments", "screen-load": "bench.screen_load", "scale": "bench.scale",
    "boards": "bench.boards", "redis-outage": "bench.redis_outage",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        code: int = module.main(argv[1:])
        return code
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="bench: app log: %(name)s: %(message)s")
    options = Options(clients=args.clients, seconds=args.seconds, warmup=args.warmup, rounds=args.rounds)
    where = backends.Services.from_env()
    setups: dict[str, Setup] = {"sqlite+memory": backends.embedded}
    if not args.embedded_only:
        setups["postgres+redis"] = lambda: backends.services(where)
    results, skipped = asyncio.run(_run_all(setups, options))
    print(table(results, skipped, options))
    print(f"\nwritten: {write_json(results, skipped, options)}")
    return 0 if results else 1


async def _run_all(setups: dict[str, Setup], options: Options) -> tuple[dict[str, BackendResult], dict[str, str]]:
    results: dict[str, BackendResult] = {}
    skipped: dict[str, str] = {}
    for name, setup in setups.items():
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            with setup() as settings:
                results[name] = await run_backend(settings, options)
        except backends.Unavailable as exc:
            skipped[name] = str(exc)
    return results, skipped


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--clients", type=_count, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per scenario (default 3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each (default 0.5)")
    parser.add_argument("--rounds", type=_count, default=3, help="interleaved rounds the seconds are split over")
    parser.add_argument("--embedded-only", action="store_true", help="skip PostgreSQL + Redis")
    return parser


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer in 1..1000")
    return int(text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
