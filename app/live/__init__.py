"""The live read model (Board), change notifications (Bus) and the repair lease: Redis or in-process.

Nothing here imports aiohttp: the service writes to these, the hub and the repair read them.
`open_live(url, prefix)` owns the Redis client, its breaker and its cached health.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from app.domain import Entry, Standing

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Bus messages. Both only say "look again"; RESYNC adds "you may have missed changes"
# (sent to local subscribers when the bus (re)connects), so it must never be folded away.
# A bare CHANGED concerns every board (a rename, a deletion, a repair); `changed(actions)` only
# the boards counting one of those actions, so that an idle board's hub is not woken.
CHANGED = "changed"
RESYNC = "resync"


def changed(actions: Iterable[str]) -> str:
    """The message of a batch: which actions' points changed (action names hold no space)."""
    return " ".join([CHANGED, *sorted(set(actions))])


def actions_of(message: str) -> frozenset[str] | None:
    """The actions a message is about; None for every board (RESYNC, a bare CHANGED, anything else)."""
    kind, _, actions = message.partition(" ")
    return frozenset(actions.split()) if kind == CHANGED and actions else None


def merged(older: str, newer: str) -> str:
    """One message that says what both say: RESYNC dominates, then a message about every board
    (the newer of two), else the union of the actions."""
    if RESYNC in (older, newer):
        return RESYNC
    old, new = actions_of(older), actions_of(newer)
    if old is None and new is not None:
        return older
    return changed(old | new) if old is not None and new is not None else newer


class LiveUnavailable(Exception):
    """The live backend (Redis) cannot answer; callers degrade to the database."""


class ReadModelIncomplete(LiveUnavailable):
    """The board is empty, lost or being rebuilt: its answer would not be the truth."""


class PairRows(NamedTuple):
    """Users' scores on one (board, period key) for its read model, and when that model expires:
    `expires` in epoch seconds of the service's clock and `ttl` seconds from now (None: never).
    No entries: the batch changed the pair but the store held its rows back (not watched here)."""

    board_id: str
    key: str
    entries: Sequence[Entry] | None
    expires: float | None
    ttl: int | None


class Board(Protocol):
    """Ranked users in O(log n): score descending, then the earlier `seq` first.

    Reads raise ReadModelIncomplete until a repair has set the board's mark.
    """

    async def upsert(self, entries: Iterable[Entry], announce: Bus | None = None, message: str = CHANGED,
                     pairs: Sequence[PairRows] = (), applied: Collection[int] = ()) -> list[tuple[str, str]]:
        """Record each entry unless the board holds a newer `seq` (the name: a newer name_version),
        and each pair's rows in its read model by the same rule (names are the board's;
        a removed user stays out); then publish `message` on `announce` (in the same round trip
        when all live in one Redis). This process's subscribers hear it even when the upsert fails.

        `applied`: change-feed keys whose every changed row is among the entries; they join the
        AppliedLog atomically with the entries (only if every entry was written).

        Returns the pairs sent without rows that are watched after all (built, or being built, by
        some process): the caller sends their rows."""

    def watched(self) -> Collection[tuple[str, str]]:
        """The pairs whose read models took rows at their last write from this process (or exist,
        in one process): a batch's store returns their rows, and holds the others' back."""

    async def remove(self, user_id: str) -> None:
        """Drop the user for good: later upserts for them are ignored (deletion is final); every
        pair's read model stops being trusted in the same step (they are rebuilt without the user)."""

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


class Pairs(Protocol):
    """The read models of (board, period key) pairs, ranked as the Board and sharing its names and
    deletions. A pair is trusted only once a build from the database has marked it complete, until
    it expires (a period ended some time ago) or is forgotten; its reads raise ReadModelIncomplete
    otherwise. `now` is the service's clock in epoch seconds."""

    async def top(self, board_id: str, key: str, limit: int, now: float) -> list[Entry]:
        """The first `limit` entries of the pair in rank order."""

    async def standing(self, board_id: str, key: str, user_id: str, around: int, now: float) -> Standing | None:
        """The user's rank on the pair and the entries around; None if absent."""

    async def start_build(self, board_id: str, key: str) -> str:
        """Empty the pair and return the build's token; then upsert its rows in pages."""

    async def finish_build(self, board_id: str, key: str, token: str, expires: float | None,
                           ttl: int | None) -> bool:
        """Mark the pair complete, unless it was forgotten or another build started since the token."""

    async def forget(self, board_id: str | None = None) -> None:
        """Stop trusting every pair of the board (of every board for None): they are rebuilt."""


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
    pairs: Pairs
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
        yield Live(board, MemoryBus(), MemoryLease(), board.pairs, board, prefix=prefix)
        return
    # imported here so that the embedded mode never imports redis
    from app.live.redis import connect

    async with connect(url, prefix) as live:
        yield live
