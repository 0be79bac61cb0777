"""`python -m bench screen`: commit-to-screen latency when idle, in Debian's Chromium.

The service (PostgreSQL + Redis, default settings) serves the page; each sample posts one
increment (its 200 means committed) and waits for the new score to be in the page's DOM at an
animation frame. The clock starts before the POST, so the figure includes the commit, the bus,
the push and the page's rendering. One sample per second: the service is idle between them.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench import procs
from bench.backends import Services
from bench.output import write_named

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
USER = "screen-watch"
PAUSE = 1.0  # seconds between samples: idle, so the first change after a quiet period goes at once


def main(argv: list[str]) -> int:
    where = Services.from_env()
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-screen-") as tmp, procs.service(where, Path(tmp)) as service:
        samples = asyncio.run(_measure(service.url, args.samples))
    report = {"samples": len(samples), "p50Ms": statistics.median(samples),
              "p95Ms": sorted(samples)[int(len(samples) * 0.95) - 1], "maxMs": max(samples), "all": samples}
    print(f"commit-to-screen when idle: p50 {report['p50Ms']:.1f} ms, p95 {report['p95Ms']:.1f} ms, "
          f"max {report['maxMs']:.1f} ms over {len(samples)} samples")
    print(f"written: {write_named('screen', report, _plot)}", file=sys.stderr)
    return 0


async def _measure(url: str, count: int) -> list[float]:
    from playwright.async_api import async_playwright

    bearer = procs.token()
    samples: list[float] = []
    async with async_playwright() as playwright, aiohttp.ClientSession() as session:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            score = await _increment(session, url, bearer)
            await page.goto(url)
            await _shown(page, score)
            for _ in range(count):
                await asyncio.sleep(PAUSE)
                started = time.perf_counter()
                await _shown(page, await _increment(session, url, bearer))
                samples.append((time.perf_counter() - started) * 1000)
        finally:
            await browser.close()
    return samples


async def _increment(session: aiohttp.ClientSession, url: str, bearer: str) -> int:
    body = {"userId": USER, "actionId": uuid.uuid4().hex}
    async with session.post(f"{url}/scores/increment", json=body,
                            headers={"Authorization": f"Bearer {bearer}"}) as response:
        response.raise_for_status()
        new_score: int = (await response.json())["newScore"]
        return new_score


async def _shown(page: Any, score: int) -> None:
    cell = f'#rows tr[data-user-id="{USER}"] td.score[data-score="{score}"]'
    await page.wait_for_function(f"() => document.querySelector('{cell}') !== null", polling="raf", timeout=10_000)


def _plot(report: dict[str, Any], axes: Any) -> None:
    axes.hist(report["all"], bins=20)
    axes.axvline(30, color="red", linestyle="--", label="target 30 ms")
    axes.set_xlabel("commit-to-screen (ms), idle")
    axes.legend()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench screen", description=__doc__)
    parser.add_argument("--samples", type=int, default=20)
    return parser
