"""The load generator: N concurrent clients repeating one request for a fixed time."""
from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

# One request of a scenario: sends it with the session, returns True if the answer was the expected one.
Request = Callable[[aiohttp.ClientSession], Awaitable[bool]]


@dataclass
class Measurement:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, one per completed request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: int) -> float:
        if len(self.latencies) < 2:
            return 0.0
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000

    def add(self, other: Measurement) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.seconds += other.seconds
        self.latencies += other.latencies

    def summary(self) -> dict[str, float | int]:
        return {"requests": self.requests, "errors": self.errors, "seconds": round(self.seconds, 3),
                "rps": round(self.rps, 1), "p50_ms": round(self.percentile_ms(50), 2),
                "p99_ms": round(self.percentile_ms(99), 2)}


async def measure(session: aiohttp.ClientSession, request: Request, clients: int, seconds: float,
                  warmup: float) -> Measurement:
    """Run `clients` loops of `request`: `warmup` seconds unrecorded, then `seconds` recorded."""
    await _run(session, request, clients, warmup, Measurement())
    result = Measurement()
    started = time.perf_counter()
    await _run(session, request, clients, seconds, result)
    result.seconds = time.perf_counter() - started
    return result


async def _run(session: aiohttp.ClientSession, request: Request, clients: int, seconds: float,
               result: Measurement) -> None:
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_client(session, request, deadline, result) for _ in range(clients)))


async def _client(session: aiohttp.ClientSession, request: Request, deadline: float, result: Measurement) -> None:
    while (started := time.perf_counter()) < deadline:
        try:
            ok = await request(session)
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        result.latencies.append(time.perf_counter() - started)
        result.requests += 1
        result.errors += not ok
