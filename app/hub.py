"""The debouncer: bus messages become at most one top-10 push per interval, newest state wins.

The hub learns of changes only from the bus, so one process and many behave the same. It
keeps the current top 10 in memory (GET /top serves it without a round trip) and encodes
each push once; every open stream holds only the newest frame in a one-value slot.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import ServiceUnavailable
from app.live import CHANGED, Bus, LiveUnavailable
from app.service import Scoreboard
from app.snapshot import Snapshot

log = logging.getLogger(__name__)
TOP_SIZE = 10
BACKSTOP = 5.0  # seconds between the backstop's nudges
STUCK_AFTER = 30.0  # seconds without a refresh after which /readyz calls the hub stuck


def sse_frame(event: str, snapshot: Snapshot, **extra: object) -> bytes:
    data = json.dumps({**snapshot.body(), **extra}, separators=(",", ":"))
    return f"event: {event}\nid: {snapshot.version}\ndata: {data}\n\n".encode()


class Slot:
    """The newest frame for one stream: a slow reader skips states, it never queues them."""

    def __init__(self) -> None:
        self._frame = b""
        self._ready = asyncio.Event()

    def put(self, frame: bytes) -> bool:
        """Hold `frame`; True if it replaced one the reader had not taken yet (coalesced)."""
        replaced = self._ready.is_set()
        self._frame = frame
        self._ready.set()
        return replaced

    async def take(self) -> bytes:
        await self._ready.wait()
        self._ready.clear()
        return self._frame


class Hub:
    def __init__(self, scoreboard: Scoreboard, bus: Bus, interval: float, max_streams: int) -> None:
        self._scoreboard = scoreboard
        self._bus = bus
        self._interval = interval
        self._max_streams = max_streams
        self._slots: set[Slot] = set()
        self.snapshot = Snapshot.of([])
        self.snapshot_frame = sse_frame("snapshot", self.snapshot)
        # Counters for the metrics, read at scrape time.
        self.pushes = 0
        self.coalesced = 0  # frames a slow stream skipped because a newer one replaced them
        self.build_seconds = 0.0  # spent encoding pushes
        # Heartbeat for /readyz: when the top 10 was last read (changed or not). A backstop task
        # publishes a change every few seconds, so a hub that stops reading is seen as stuck.
        self.refreshed_at = time.monotonic()

    @property
    def open_streams(self) -> int:
        return len(self._slots)

    async def refresh(self) -> bool:
        """Read the top 10 again; push an update to every stream if it changed."""
        snapshot = Snapshot.of(await self._scoreboard.top(TOP_SIZE))
        self.refreshed_at = time.monotonic()
        if snapshot.version == self.snapshot.version:
            return False
        started = time.perf_counter()
        self.snapshot = snapshot
        self.snapshot_frame = sse_frame("snapshot", snapshot)
        update = sse_frame("update", snapshot, ts=int(time.time() * 1000))
        self.build_seconds += time.perf_counter() - started
        self.coalesced += sum(slot.put(update) for slot in self._slots)
        self.pushes += 1
        return True

    async def run(self) -> None:
        """Forever: wait for a change, respect the interval since the last push, read, push."""
        async with self._bus.subscribe() as messages:
            last_push = float("-inf")
            async for _ in messages:
                # The first change after a quiet period goes out at once; later ones wait for
                # the interval, and the one-message bus queue folds them into one trailing read.
                # Counted from the end of the last read: a read that takes longer than the one
                # before must not bring two pushes closer together than the interval.
                await asyncio.sleep(max(0.0, last_push + self._interval - time.monotonic()))
                try:
                    await self.refresh()
                except ServiceUnavailable as exc:
                    log.warning("top 10 not refreshed, database unavailable: %s", exc)
                last_push = time.monotonic()

    @asynccontextmanager
    async def stream_slot(self) -> AsyncIterator[Slot]:
        """A slot that receives every push until exit; ServiceUnavailable when full."""
        if len(self._slots) >= self._max_streams:
            raise ServiceUnavailable("too many open streams; poll GET /top instead",
                                     {"maxStreams": self._max_streams})
        slot = Slot()
        self._slots.add(slot)
        try:
            yield slot
        finally:
            self._slots.discard(slot)


async def backstop(bus: Bus, every: float = BACKSTOP) -> None:
    """Nudge the hub every few seconds: a change whose notification was lost (the publish
    failed after the board write) still reaches the streams, and the nudge is the hub's
    heartbeat (`refreshed_at`). It goes through the bus, so it is debounced like any change."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(LiveUnavailable):  # delivered locally before Redis is tried
            await bus.publish(CHANGED)
