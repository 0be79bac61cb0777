"""Keeps the read model equal to the database: on start, when the bus reconnects, and periodically.

Repairs are targeted rather than a wholesale replace, so they are safe while other
processes write: the board is read before the database, an upsert never moves a user
back to an older event, and a user on the board but not in the (later) database read
must have been deleted.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from app.domain import Entry
from app.errors import ServiceUnavailable
from app.live import RESYNC, Board, Bus, LiveUnavailable
from app.service import CHANGED
from app.store import Store

log = logging.getLogger(__name__)
PAGE = 10_000
EVERYONE = 2**31  # a limit larger than any board


class Reconciler:
    def __init__(self, store: Store, board: Board, bus: Bus, interval: float) -> None:
        self._store = store
        self._board = board
        self._bus = bus
        self._interval = interval
        self.repaired = 0  # entries fixed since start
        self.runs = 0

    async def reconcile(self) -> int:
        """Repair every difference between the board and the database; returns how many."""
        on_board = {entry.user_id: entry for entry in await self._board.top(EVERYONE)}
        in_database = await self._all_entries()
        stale = [entry for entry in in_database if on_board.pop(entry.user_id, None) != entry]
        if stale:
            await self._board.upsert(stale)
        deleted = [user_id for user_id in on_board if await self._deleted(user_id)]
        for user_id in deleted:
            await self._board.remove(user_id)
        repaired = len(stale) + len(deleted)
        self.repaired += repaired
        self.runs += 1
        if repaired:
            log.warning("read model repaired: %d entries differed from the database", repaired)
            await self._bus.publish(CHANGED)
        return repaired

    async def _deleted(self, user_id: str) -> bool:
        # Paged reads can miss a row that moved between pages: confirm before removing for good.
        return await self._store.standing(user_id, 0) is None

    async def _all_entries(self) -> list[Entry]:
        entries: list[Entry] = []
        while page := await self._store.ranked(len(entries), PAGE):
            entries.extend(page)
        return entries

    async def run(self) -> None:
        """Reconcile every interval, and at once when the bus says it (re)connected."""
        async with self._bus.subscribe() as messages:
            while True:
                try:
                    await self.reconcile()
                except (LiveUnavailable, ServiceUnavailable) as exc:
                    log.warning("read model not reconciled: %s", exc)
                await _until_resync(messages, self._interval)


async def _until_resync(messages: AsyncIterator[str], seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            async for message in messages:
                if message == RESYNC:
                    return
    except TimeoutError:
        return
