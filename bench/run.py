"""One backend's run: the app in process behind aiohttp's test server, the scenarios interleaved in rounds."""
from __future__ import annotations

import random
from dataclasses import dataclass

import aiohttp
from aiohttp.test_utils import TestServer

from app.auth.tokens import mint_token
from app.config import Settings
from app.web import create_app
from bench import scenarios
from bench.load import Measurement, Request, measure

BASELINE = "GET /healthz (baseline)"
LATER_WARMUP = 0.1  # seconds before each later round's slice: the first round has the full warmup


@dataclass(frozen=True)
class Options:
    clients: int
    seconds: float  # measured per scenario, split over the rounds
    warmup: float
    rounds: int


@dataclass(frozen=True)
class Row:
    endpoint: str
    measurement: Measurement
    ratio: float  # requests/s as a fraction of the baseline's


@dataclass(frozen=True)
class BackendResult:
    rows: list[Row]  # the baseline first
    baseline_spread: float  # (max - min) / mean of the baseline's rounds: how noisy the machine was


async def run_backend(settings: Settings, options: Options) -> BackendResult:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        connector = aiohttp.TCPConnector(limit=options.clients)
        async with aiohttp.ClientSession(str(server.make_url("/")), connector=connector) as session:
            token = mint_token(settings, sub="bench", scopes="scores:write users:write")
            await scenarios.seed(session, token)
            return await _rounds(session, _plan(token), options)
    finally:
        await server.close()


def _plan(token: str) -> dict[str, Request]:
    rng = random.Random(1)
    return {
        BASELINE: scenarios.healthz(),
        "POST /scores/increment": scenarios.increment(token, rng),
        "GET /top": scenarios.top(),
        "GET /scores/{id}": scenarios.score(rng),
    }


async def _rounds(session: aiohttp.ClientSession, plan: dict[str, Request], options: Options) -> BackendResult:
    """Every scenario once per round, so a busy moment on the machine hits all of them alike."""
    totals = {name: Measurement() for name in plan}
    baseline_rounds: list[float] = []
    for number in range(options.rounds):
        warmup = options.warmup if number == 0 else LATER_WARMUP
        for name, request in plan.items():
            slice_ = await measure(session, request, options.clients, options.seconds / options.rounds, warmup)
            totals[name].add(slice_)
            if name == BASELINE:
                baseline_rounds.append(slice_.rps)
    return BackendResult(_rows(totals), _spread(baseline_rounds))


def _rows(totals: dict[str, Measurement]) -> list[Row]:
    baseline = totals[BASELINE].rps
    return [Row(name, m, m.rps / baseline if baseline else 0.0) for name, m in totals.items()]


def _spread(values: list[float]) -> float:
    mean = sum(values) / len(values) if values else 0.0
    return (max(values) - min(values)) / mean if mean else 0.0
