"""The live read model (Board), change notifications (Bus) and the repair lease: Redis or in-process.

Nothing here imports aiohttp: the service writes to these, the hub and the repair read them.
`open_live(url, prefix)` owns the Redis client, its breaker and its cached health.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from app.domain import Entry, Standing

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Bus messages. Both only say "look again"; RESYNC adds "you may have missed changes"
# (sent to local subscribers when the bus (re)connects), so it must never be folded away.
CHANGED = "changed"
RESYNC = "resync"


class LiveUnavailable(Exception):
    """The live backend (Redis) cannot answer; callers degrade to the database."""


class ReadModelIncomplete(LiveUnavailable):
    """The board is empty, lost or being rebuilt: its answer would not be the truth."""


class Board(Protocol):
    """Ranked users in O(log n): score descending, then the earlier `seq` first.

    Reads raise ReadModelIncomplete until a repair has set the board's mark.
    """

    async def upsert(self, entries: Iterable[Entry], announce: Bus | None = None,
                     applied: Collection[int] = ()) -> None:
        """Record each entry unless the board holds a newer `seq` (the name: a newer name_version);
        then publish CHANGED on `announce` (in the same round trip when both live in one Redis).
        This process's subscribers hear it even when the upsert fails.

        `applied`: change-feed keys whose every changed row is among the entries; they join the
        AppliedLog atomically with the entries (only if every entry was written)."""

    async def remove(self, user_id: str) -> None:
        """Drop the user for good: later upserts for them are ignored (deletion is final)."""

    async def top(self, limit: int) -> list[Entry]:
        """The first `limit` entries in rank order."""

    async def standing(self, user_id: str, around: int) -> Standing | None:
        """The user's rank and the entries from rank-around to rank+around; None if absent."""

    async def mark(self) -> int | None:
        """The change-feed horizon the board is complete up to; None when empty or lost."""

    async def set_mark(self, mark: int) -> None:
        """Record that every change below `mark` is on the board (and make reads trust it);
        forget the applied keys below it (no repair asks about them again)."""


class AppliedLog(Protocol):
    """Which change-feed keys (transactions, in PostgreSQL) are known to be on the board.

    The board records a key in the same atomic write as the entries it changed (Board.upsert's
    `applied`), so a key absent here may be missing from the read model (its writer died between
    commit and upsert, or the upsert failed): the repair reads only the rows of such keys. Keys
    below the board's mark are forgotten: ask only about keys at or above it.
    """

    async def unapplied(self, keys: Sequence[int]) -> list[int]:
        """The keys, in the given order, that no upsert recorded as applied."""


class Bus(Protocol):
    """Change notifications between processes; a message only says 'look again'."""

    async def publish(self, message: str) -> None:
        """Tell every subscriber, in every process, that something changed."""

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """Messages published after entry, until exit."""


class Lease(Protocol):
    """One repairer at a time, across every process sharing the board."""

    async def claim(self, seconds: float) -> bool:
        """Take (or extend) the lease for `seconds`; False if another holder has it."""

    async def release(self) -> None:
        """Give the lease up if it is still ours."""


@dataclass
class Freshness:
    """Whether this process may trust the board: not after one of its own writes to it failed.

    Each failure opens a generation; a repair that started after it closes it.
    """

    failed: int = 0
    repaired: int = 0
    wake: Callable[[], None] = field(default=lambda: None)

    @property
    def trusted(self) -> bool:
        return self.repaired == self.failed

    def write_failed(self) -> None:
        self.failed += 1
        self.wake()

    def repair_started(self) -> int:
        return self.failed

    def repair_done(self, generation: int) -> None:
        self.repaired = max(self.repaired, generation)


@dataclass
class Live:
    """What open_live yields: the board, bus and lease, the client (for the rate limiter), health."""

    board: Board
    bus: Bus
    lease: Lease
    applied: AppliedLog  # kept by the board's writes
    redis: Redis | None = None
    # One breaker for every Redis call of the process, the rate limiter's included.
    guard: Callable[[], AbstractContextManager[None]] = nullcontext
    status: Callable[[], str] = lambda: "not configured"
    freshness: Freshness = field(default_factory=Freshness)
    watch: Callable[[], Awaitable[None]] | None = None  # keeps `status` current; run it supervised
    prefix: str = ""


@asynccontextmanager
async def open_live(url: str | None, prefix: str) -> AsyncIterator[Live]:
    """Redis implementations for a URL, in-process ones (one process only) for None.

    `prefix` starts every key and the channel; the client is closed on exit.
    """
    if url is None:
        from app.live.memory import MemoryBoard, MemoryBus, MemoryLease

        board = MemoryBoard()
        yield Live(board, MemoryBus(), MemoryLease(), board, prefix=prefix)
        return
    # imported here so that the embedded mode never imports redis
    from app.live.redis import connect

    async with connect(url, prefix) as live:
        yield live
