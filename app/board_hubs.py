"""One debounced hub per watched (board, period): created by the first stream, dropped after the last.

Only watched pairs are read and pushed: an unwatched board costs nothing per push, and a watched
one is read only after a message about an action it counts (or about every board), so an idle
board costs nothing either. Each hub works as the main hub does (app/hub.py): the bus says
"look again", at most one push per interval, newest state wins, each push encoded once and
written by its own stream registry in one pass. A hub follows the current period: when the
clock passes the period's end it sends the ended period's final state as an `update`, then the
new period's `snapshot`, in one frame so that no stream gets one without the other.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from app.boards import BoardConfig
from app.domain import Entry
from app.errors import NotFound, ServiceUnavailable
from app.hub import READ_SPACING, TOP_SIZE, until
from app.live import Bus, actions_of
from app.periods import Clock, period_end, period_key
from app.snapshot import Snapshot
from app.streams import Frame, StreamRegistry

log = logging.getLogger(__name__)
ROLLOVER_TICK = 1.0  # seconds: the longest a hub goes without looking at the clock
UNCAPPED = 1 << 30  # a pair's registry: the caps are the main registry's, which admits every stream too

Read = Callable[[str, str, int], Awaitable[list[Entry]]]  # (board, period key, limit) -> entries
Config = Callable[[str], Awaitable[BoardConfig]]  # a board's current configuration (cached)


def pair_snapshot(entries: list[Entry], board_id: str, period: str, key: str) -> Snapshot:
    """A (board, period key) state: the /top body plus board, period and periodKey."""
    return Snapshot.of(entries, (board_id, key), {"board": board_id, "period": period, "periodKey": key})


@dataclass(frozen=True, slots=True)
class StreamSettings:
    interval: float
    ping_interval: float
    send_timeout: float


class PairHub:
    def __init__(self, board: BoardConfig, period: str, read: Read, bus: Bus, clock: Clock,
                 settings: StreamSettings, config: Config | None = None) -> None:
        self.board, self.period = board, period
        self._config = config
        self._read_entries, self._bus, self._clock, self._interval = read, bus, clock, settings.interval
        self.streams = StreamRegistry(UNCAPPED, UNCAPPED, settings.interval, settings.ping_interval,
                                      settings.send_timeout)
        self.key = period_key(period, clock(), board.zone)
        self.snapshot = pair_snapshot([], board.board_id, period, self.key)
        self.snapshot_frame = self.snapshot.sse("snapshot")
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.current = False  # True once the first read is in: `snapshot` is the pair's state
        self.reads = 0  # of the pair's top 10, for the metrics and the tests
        self._read_started = float("-inf")  # monotonic: the last read's start (see READ_SPACING)
        self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self.streams.keep_alive())]

    async def ready(self) -> None:
        """Wait for the first read (its error, if it failed)."""
        await asyncio.shield(self._ready)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self._ready.done():
            self._ready.cancel()

    async def _read(self, key: str) -> Snapshot:
        self.reads += 1
        self._read_started = time.monotonic()
        return pair_snapshot(await self._read_entries(self.board.board_id, key, TOP_SIZE),
                             self.board.board_id, self.period, key)

    async def _run(self) -> None:
        # Subscribed before the first read: a change committed after the read is heard.
        async with self._bus.subscribe() as messages:
            try:
                self._set(await self._read(self.key))
            except Exception as exc:  # every watcher gets it from ready(); the last one stops this hub
                self._ready.set_exception(exc)
                return
            self.current = True
            self._ready.set_result(None)
            while True:
                await self._step(await self._next(messages))

    async def _step(self, changed: bool) -> None:
        """Roll over if the period ended, else read again after a change; a failure waits for the next."""
        try:
            if period_key(self.period, self._clock(), self.board.zone) != self.key:
                await self._roll_over()
            elif changed:
                await self._refresh()
        except ServiceUnavailable as exc:
            log.warning("board %s %s not refreshed, database unavailable: %s", self.board.board_id, self.period, exc)
        except Exception:  # a surprise must not silence the pair for its watchers: the next change retries
            log.exception("board %s %s not refreshed", self.board.board_id, self.period)

    async def _next(self, messages: AsyncIterator[str]) -> bool:
        """True after a bus message about this board; False when it is time to look at the clock."""
        end = period_end(self.period, self._clock(), self.board.zone)
        left = ROLLOVER_TICK if end is None else (end - self._clock()).total_seconds()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(min(left, ROLLOVER_TICK), 0.0)
        while True:
            try:
                message = await asyncio.wait_for(anext(messages), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                return False
            if await self._concerns(message):
                return True

    async def _concerns(self, message: str) -> bool:
        """Whether a message may have changed this board: an idle board is not read for another's.
        The actions counted are the board's current ones (a PUT may change them while it is watched)."""
        actions = actions_of(message)
        if actions is None:
            return True
        board = self.board
        if self._config is not None:
            try:
                board = await self._config(board.board_id)
            except (NotFound, ServiceUnavailable):  # deleted, or unknown now: read, and let the read tell
                return True
        return any(board.counts(action) for action in actions)

    async def _refresh(self) -> None:
        await until(max(self.streams.last_push + self._interval, self._read_started + self._interval * READ_SPACING))
        snapshot = await self._read(self.key)
        if snapshot.version != self.snapshot.version:
            update = Frame.of(snapshot.sse("update", ts=int(time.time() * 1000)))
            self._set(snapshot)
            self.streams.push(update)

    async def _roll_over(self) -> None:
        """The ended period's final state as an update, then the new period's snapshot."""
        key = period_key(self.period, self._clock(), self.board.zone)
        final, fresh = await self._read(self.key), await self._read(key)
        frame = Frame.of(final.sse("update", ts=int(time.time() * 1000)) + fresh.sse("snapshot"))
        self.key = key
        self._set(fresh)
        self.streams.push(frame)

    def _set(self, snapshot: Snapshot) -> None:
        self.snapshot, self.snapshot_frame = snapshot, snapshot.sse("snapshot")


class BoardHubs:
    """The hubs of the watched pairs of this process."""

    def __init__(self, read: Read, bus: Bus, clock: Clock, settings: StreamSettings,
                 config: Config | None = None) -> None:
        self._read, self._bus, self._clock, self._settings = read, bus, clock, settings
        self._config = config
        self._hubs: dict[tuple[str, str], PairHub] = {}
        self._watchers: Counter[tuple[str, str]] = Counter()

    def watched(self, board_id: str, period: str) -> PairHub | None:
        """The pair's hub if it is watched and has read its state."""
        hub = self._hubs.get((board_id, period))
        return hub if hub is not None and hub.current else None

    @contextlib.asynccontextmanager
    async def watch(self, board: BoardConfig, period: str) -> AsyncIterator[PairHub]:
        """The pair's hub for the block, its first top 10 read; the last watcher stops it."""
        pair = (board.board_id, period)
        hub = self._hubs.get(pair)
        if hub is None:
            hub = self._hubs[pair] = PairHub(board, period, self._read, self._bus, self._clock, self._settings,
                                             self._config)
        self._watchers[pair] += 1
        try:
            await hub.ready()
            yield hub
        finally:
            self._watchers[pair] -= 1
            if not self._watchers[pair]:
                del self._watchers[pair], self._hubs[pair]
                await hub.stop()

    async def close(self) -> None:
        for hub in list(self._hubs.values()):
            await hub.stop()
        self._hubs.clear()
        self._watchers.clear()
