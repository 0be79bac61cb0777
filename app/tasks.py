"""Background tasks: each one supervised (restarted with a backoff after any failure, and
counted), and stopped for sure."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0  # seconds
HEALTHY_AFTER = 30.0  # seconds of running that reset the backoff


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has ended.

    On Python 3.11 a cancel that meets a library's own timeout (redis-py's socket reads)
    can be swallowed and surface as a timeout, so the cancel is repeated until it takes.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)


class Supervisor:
    """Runs named tasks forever: a task that fails or returns is logged, counted and restarted."""

    def __init__(self) -> None:
        self.restarts: Counter[str] = Counter()
        self.waiting: dict[str, str] = {}  # tasks in their backoff now, with the reason
        self.failures: dict[str, tuple[float, str]] = {}  # each task's last failure: (monotonic time, reason)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        self._tasks.append(asyncio.create_task(self._keep(name, work), name=name))

    async def _keep(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        delay = BACKOFF_MIN
        while True:
            started = time.monotonic()
            reason = await _run(name, work)
            if time.monotonic() - started > HEALTHY_AFTER:
                delay = BACKOFF_MIN
            self.restarts[name] += 1
            self.failures[name] = (time.monotonic(), reason)
            self.waiting[name] = reason
            log.warning("background task %s restarts in %.1f s (%s)", name, delay, reason)
            await asyncio.sleep(delay)
            del self.waiting[name]
            delay = min(delay * 2, BACKOFF_MAX)

    async def stop(self) -> None:
        for task in reversed(self._tasks):
            await stop(task)
        self._tasks.clear()


async def _run(name: str, work: Callable[[], Awaitable[None]]) -> str:
    """Run `work` until it ends; why it ended (it should never)."""
    try:
        await work()
    except Exception as exc:
        log.exception("background task %s failed", name)
        return f"{type(exc).__name__}: {exc}"[:200]
    log.error("background task %s returned", name)
    return "returned"
