"""In-process Board and Bus (one process only), and the local fan-out the Redis bus reuses."""
from __future__ import annotations

import asyncio
import dataclasses
from bisect import bisect_left, insort
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from app.domain import Entry, Standing
from app.live import CHANGED, Bus, PairRows, ReadModelIncomplete, merged
from app.live.memory_pairs import MemoryPairs

_Key = tuple[int, int, str]


def _key(entry: Entry) -> _Key:
    return (-entry.score, entry.seq, entry.user_id)


class MemoryBoard:
    """Rank keys in a sorted list (bisect), entries by user id, tombstones for removed users."""

    def __init__(self, removed: set[str] | None = None) -> None:
        self._keys: list[_Key] = []
        self._entries: dict[str, Entry] = {}
        self._removed: set[str] = set() if removed is None else removed
        self._mark: int | None = None
        self._applied: set[int] = set()  # the AppliedLog
        self.pairs = MemoryPairs(self)

    async def upsert(self, entries: Iterable[Entry], announce: Bus | None = None, message: str = CHANGED,
                     pairs: Sequence[PairRows] = (), applied: Collection[int] = ()) -> list[tuple[str, str]]:
        self.upsert_now(entries)
        wanted = self.pairs.write(pairs)
        self._applied.update(applied)
        if announce is not None:
            await announce.publish(message)
        return wanted

    def watched(self) -> frozenset[tuple[str, str]]:
        return self.pairs.watched()

    def upsert_now(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            if entry.user_id not in self._removed:
                self._put(entry)

    def sharing_removals(self) -> MemoryBoard:
        """An empty board (a pair's) that leaves out every user removed from this one."""
        return MemoryBoard(self._removed)

    def entry(self, user_id: str) -> Entry | None:
        return self._entries.get(user_id)

    def _put(self, entry: Entry) -> None:
        old = self._entries.get(entry.user_id)
        if old is not None and (entry.name_version, entry.seq) < (old.name_version, old.seq):
            # an older name never wins: by version, then (equal versions) by the newer event
            entry = dataclasses.replace(entry, display_name=old.display_name, name_version=old.name_version)
        if old is not None and entry.seq <= old.seq:
            # not a newer score: at most the name changes
            self._entries[entry.user_id] = dataclasses.replace(
                old, display_name=entry.display_name, name_version=entry.name_version)
            return
        if old is not None:
            del self._keys[bisect_left(self._keys, _key(old))]
        insort(self._keys, _key(entry))
        self._entries[entry.user_id] = entry

    async def remove(self, user_id: str) -> None:
        await self.pairs.forget()  # the pairs still hold the user: they are rebuilt without them
        self._removed.add(user_id)
        old = self._entries.pop(user_id, None)
        if old is not None:
            del self._keys[bisect_left(self._keys, _key(old))]

    async def top(self, limit: int) -> list[Entry]:
        self._complete()
        return [self._entries[key[2]] for key in self._keys[: max(limit, 0)]]

    async def standing(self, user_id: str, around: int) -> Standing | None:
        self._complete()
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        index, around = bisect_left(self._keys, _key(entry)), max(around, 0)
        window = self._keys[max(index - around, 0) : index + around + 1]
        return Standing(entry, index + 1, tuple(self._entries[key[2]] for key in window))

    async def mark(self) -> int | None:
        return self._mark

    async def set_mark(self, mark: int) -> None:
        self._mark = mark
        self._applied = {key for key in self._applied if key >= mark}

    async def unapplied(self, keys: Sequence[int]) -> list[int]:
        return [key for key in keys if key not in self._applied]

    def _complete(self) -> None:
        if self._mark is None:
            raise ReadModelIncomplete("the read model is being built")


class MemoryLease:
    """One process: the lease is a flag."""

    def __init__(self) -> None:
        self._held = False

    async def claim(self, seconds: float) -> bool:
        self._held = True
        return True

    async def release(self) -> None:
        self._held = False


class Messages:
    """What a subscriber iterates: a one-slot queue in which the newest message wins."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)

    def offer(self, message: str) -> None:
        # a message only says "look again" (about some boards): an unread one is merged into the
        # newer one, so that neither a RESYNC nor a board it named is lost
        if self._queue.full():
            message = merged(self._queue.get_nowait(), message)
        self._queue.put_nowait(message)

    def __aiter__(self) -> Messages:
        return self

    async def __anext__(self) -> str:
        return await self._queue.get()


class Fanout:
    """The local subscribers of one bus; delivering never blocks the publisher."""

    def __init__(self) -> None:
        self._subscribers: set[Messages] = set()

    def __len__(self) -> int:
        return len(self._subscribers)

    def deliver(self, message: str) -> None:
        for messages in self._subscribers:
            messages.offer(message)

    @asynccontextmanager
    async def attach(self) -> AsyncIterator[Messages]:
        messages = Messages()
        self._subscribers.add(messages)
        try:
            yield messages
        finally:
            self._subscribers.discard(messages)


class MemoryBus:
    """Change notifications within this process."""

    def __init__(self) -> None:
        self._fanout = Fanout()

    async def publish(self, message: str) -> None:
        self._fanout.deliver(message)

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self._fanout.attach()
