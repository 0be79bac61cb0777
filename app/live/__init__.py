"""The live read model (Board) and change notifications (Bus): Redis or in-process.

Neither imports aiohttp: the service writes to them, the hub reads from them.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

from app.domain import Entry, Standing

if TYPE_CHECKING:
    from redis.asyncio import Redis


# Sent to local subscribers when the bus (re)connects: changes may have been missed.
RESYNC = "resync"
# Published after a commit changed the board: every process's hub looks again.
CHANGED = "changed"


class LiveUnavailable(Exception):
    """The live backend (Redis) cannot be reached; callers degrade to the database."""


class Board(Protocol):
    """Ranked users in O(log n): score descending, then the earlier `seq` first."""

    async def upsert(self, entries: Iterable[Entry], announce: Bus | None = None) -> None:
        """Record each entry unless the board already holds a newer `seq` for that user; then
        publish CHANGED on `announce` (in the same round trip when both live in one Redis).
        This process's subscribers hear it even when the upsert fails."""

    async def remove(self, user_id: str) -> None:
        """Drop the user for good: later upserts for them are ignored (deletion is final)."""

    async def top(self, limit: int) -> list[Entry]:
        """The first `limit` entries in rank order."""

    async def standing(self, user_id: str, around: int) -> Standing | None:
        """The user's rank and the entries from rank-around to rank+around; None if absent."""


class Bus(Protocol):
    """Change notifications between processes; a message only says 'look again'."""

    async def publish(self, message: str) -> None:
        """Tell every subscriber, in every process, that something changed."""

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """Messages published after entry, until exit."""


def open_live(redis: Redis | None, prefix: str) -> tuple[Board, Bus]:
    """Redis implementations for a client, in-process ones (one process only) for None.

    The caller owns the client (and closes it); `prefix` starts every key and the channel.
    """
    if redis is None:
        from app.live.memory import MemoryBoard, MemoryBus

        return MemoryBoard(), MemoryBus()
    # imported here so that the embedded mode never imports redis
    from app.live.redis import RedisBoard, RedisBus

    return RedisBoard(redis, prefix), RedisBus(redis, prefix)
