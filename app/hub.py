"""The debouncer: bus messages become at most one top-10 push per interval, newest state wins.

The hub learns of changes only from the bus, so one process and many behave the same. It
keeps the current top 10 in memory (GET /top and every new stream serve it without a round
trip), encodes each push once and hands it to the stream registry, which writes it to every
stream in one pass.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from app.domain import Entry
from app.errors import ServiceUnavailable
from app.live import CHANGED, Bus, LiveUnavailable
from app.snapshot import Snapshot
from app.streams import Frame, StreamRegistry

log = logging.getLogger(__name__)
TOP_SIZE = 10
READ_MARGIN = 0.01  # seconds: a busy loop answers a read this much later than an idle one
# A read that finds the top 10 unchanged makes no push to space the next read from, so reads are
# also spaced by this share of the interval: under increments that leave the top 10 as it is,
# a read per batch was 7 % of the worker at c16 (py-spy), and a change right after a read that
# found nothing (the backstop's, on an idle board) waits at most this much longer.
READ_SPACING = 0.25
BACKSTOP = 5.0  # seconds between the backstop's nudges
STUCK_AFTER = 30.0  # seconds without a refresh after which /readyz calls the hub stuck

Top = Callable[[int], Awaitable[list[Entry]]]


class Hub:
    def __init__(self, top: Top, bus: Bus, streams: StreamRegistry, interval: float) -> None:
        self._top = top
        self._bus = bus
        self._interval = interval
        self.streams = streams
        self.snapshot = Snapshot.of([])
        self.snapshot_frame = self.snapshot.sse("snapshot")
        self._read_seconds = 0.0  # how long the last read took: the next one starts that much early
        self._read_started = float("-inf")  # monotonic: the last read's start (see READ_SPACING)
        # Counters for the metrics, read at scrape time.
        self.pushes = 0
        self.build_seconds = 0.0  # spent encoding pushes
        # Heartbeat for /readyz: when the top 10 was last read (changed or not). A backstop task
        # publishes a change every few seconds, so a hub that stops reading is seen as stuck.
        self.refreshed_at = time.monotonic()

    @property
    def open_streams(self) -> int:
        return len(self.streams)

    @property
    def coalesced(self) -> int:
        """Frames a slow stream skipped because a newer one replaced them."""
        return self.streams.skipped

    async def refresh(self) -> bool:
        """Read the top 10 again; push an update to every stream if it changed."""
        return self.publish(await self._read())

    def publish(self, snapshot: Snapshot) -> bool:
        if snapshot.version == self.snapshot.version:
            return False
        started = time.perf_counter()
        update = Frame.of(snapshot.sse("update", ts=int(time.time() * 1000)))
        self.snapshot, self.snapshot_frame = snapshot, snapshot.sse("snapshot")
        self.build_seconds += time.perf_counter() - started
        self.streams.push(update)  # in the same step as the new snapshot: a joining stream sees both or neither
        self.pushes += 1
        return True

    async def run(self) -> None:
        """Forever: wait for a change, read, push, never two pushes closer than the interval (nor
        two reads closer than READ_SPACING of it).

        The read starts early by the last read's duration, so that under continuous change
        the pushes come every interval (from the start of one push to the start of the
        next), not every interval plus a read; and only once the previous push is written.
        """
        async with self._bus.subscribe() as messages:
            async for _ in messages:
                await until(max(self.streams.last_push + self._interval - self._read_ahead(),
                                self._read_started + self._interval * READ_SPACING))
                # Behind a pass still being written, every step of the read would wait for a
                # slice of it (at 10,000 streams, tens of milliseconds each): read once it is out.
                await self.streams.written()
                try:
                    snapshot = await self._read()
                except ServiceUnavailable as exc:
                    log.warning("top 10 not refreshed, database unavailable: %s", exc)
                    continue
                await until(self.streams.last_push + self._interval)
                self.publish(snapshot)

    def _read_ahead(self) -> float:
        """How early to start reading: a read that ends after its push is due delays the push,
        and under continuous change every delay is a push less per second, so leave a margin."""
        return min(self._interval / 2, 2 * self._read_seconds + READ_MARGIN)

    async def _read(self) -> Snapshot:
        started = self._read_started = time.monotonic()
        snapshot = Snapshot.of(await self._top(TOP_SIZE))
        self._read_seconds = time.monotonic() - started
        self.refreshed_at = time.monotonic()
        return snapshot

async def until(moment: float) -> None:
    """Sleep until the monotonic `moment`."""
    # asyncio may run a timer up to its clock resolution early: a push before the moment
    # would find every stream still held back, so wake a microsecond late instead.
    delay = moment - time.monotonic()
    await asyncio.sleep(delay + 1e-6 if delay > 0 else 0)


async def backstop(bus: Bus, every: float = BACKSTOP) -> None:
    """Nudge the hub every few seconds: a change whose notification was lost (the publish
    failed after the board write) still reaches the streams, and the nudge is the hub's
    heartbeat (`refreshed_at`). It goes through the bus, so it is debounced like any change."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(LiveUnavailable):  # delivered locally before Redis is tried
            await bus.publish(CHANGED)
