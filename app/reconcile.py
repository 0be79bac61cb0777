"""Keeps the read model equal to the database by reading only what changed since its mark.

The database keys every change of a user (see sql/*/0003_changes.sql). A pass takes the
horizon first, then reads only the distinct keys from its mark on and asks the board's
AppliedLog which of them no upsert recorded (the batches record their transaction's key as they
upsert, so normally none): it reads and applies only the rows of those keys, in keyset pages,
then moves the mark to the horizon. Its cost follows the changes nobody applied, not the
number of users nor the traffic. A board without a mark (empty, lost, never built) is rebuilt
from the start of the feed, every row; reads fall back to the database until the mark is set.
Upserts never move a user back, names only forward, removals are final: a pass is safe while
others write, and one process at a time runs it (the lease) only to save work.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from app.domain import Change
from app.errors import ServiceUnavailable
from app.live import CHANGED, RESYNC, Live, LiveUnavailable
from app.store import ChangeFeed

log = logging.getLogger(__name__)
# Feed rows per page: one query and one or two Redis scripts each. A rebuild takes big pages (reads
# use the database meanwhile); a repair behind live reads takes small ones, so that neither the
# event loop nor Redis is held more than a few ms at a time (py-spy: row decoding and command
# packing dominate a page; at 1M users, pages of 1,000 / 200 / 100 gave a p99 of 3.9 / 1.95 / 1.36
# times the idle one during a 100k-user repair; 100 with a rest as long as each page: 1.01 and 1.41
# in two runs of 5 rounds, so 50: a request waits behind half as much).
PAGE = 1000
REPAIR_PAGE = 50
KEY_PAGE = 1000  # change keys per AppliedLog question (one index-only query, one Redis command)
LEASE = 30.0  # seconds; extended after every page, so only a dead holder makes others wait
RETRY = 0.5  # seconds before trying again when another process holds the lease
FEED_START = -(2**63)


class Reconciler:
    def __init__(self, store: ChangeFeed, live: Live, interval: float, page: int = PAGE,
                 repair_page: int = REPAIR_PAGE) -> None:
        self._store = store
        self._board, self._bus, self._lease = live.board, live.bus, live.lease
        self._pairs, self._applied = live.pairs, live.applied
        self._freshness = live.freshness
        self._interval = interval
        self._page = page
        self._repair_page = repair_page
        self._wanted = asyncio.Event()
        self._freshness.wake = self._wanted.set
        self._resynced = False  # the bus (re)connected since the last pass
        self.repaired = 0  # feed rows applied since start
        self.runs = 0
        self.rebuilds = 0

    async def reconcile(self) -> int | None:
        """One pass; how many changed users it applied, or None if another process is repairing."""
        if not await self._lease.claim(LEASE):
            return None
        try:
            return await self._pass()
        finally:
            with contextlib.suppress(LiveUnavailable):
                await self._lease.release()

    async def _pass(self) -> int:
        generation = self._freshness.repair_started()
        resynced, self._resynced = self._resynced, False  # a RESYNC heard from here on: the next pass
        if generation != self._freshness.repaired or resynced:
            # A write of this process to the read model failed, or Redis came back (perhaps from an
            # older snapshot): the pairs' models may miss writes, and unlike the board they have no
            # change feed to repair them, so they are rebuilt (as after a transaction nobody applied).
            try:
                await self._pairs.forget()
            except LiveUnavailable:
                self._resynced |= resynced
                raise
        horizon = await self._store.change_horizon()  # before reading: nothing below it is in flight
        mark = await self._board.mark()
        if mark is None:
            self.rebuilds += 1
            log.warning("read model empty or lost: rebuilding it from the database")
        if mark is None:  # reads use the database meanwhile: rebuild at full speed
            applied = await self._apply(partial(self._store.changes, FEED_START), self._page, paced=False)
        else:
            applied = await self._repair(mark)
        await self._board.set_mark(horizon)
        self._freshness.repair_done(generation)
        self.runs += 1
        self.repaired += applied
        if mark is None:
            log.warning("read model rebuilt: %d users", applied)
        if applied:
            with contextlib.suppress(LiveUnavailable):
                await self._bus.publish(CHANGED)
        return applied

    async def _repair(self, mark: int) -> int:
        """Apply the rows of the keys from `mark` on that the AppliedLog lacks. Keys at or above
        the horizon are visible too (committed while an older transaction still runs): checking
        them now repairs a failed write before this pass counts as the repair that follows it."""
        applied, since = 0, mark
        while keys := await self._store.change_keys(since, KEY_PAGE):
            missing = await self._applied.unapplied(keys)
            if missing:  # reads use the board: leave the loop to them at least half the time
                await self._pairs.forget()  # their writes to the pairs may be missing too: rebuild those
                applied += await self._apply(partial(self._store.changes_of, missing), self._repair_page, paced=True)
                # every row of these keys is on the board now: while an old transaction elsewhere
                # holds the horizon (and so the mark) back, later passes do not read them again
                await self._board.upsert([], applied=missing)
            if len(keys) < KEY_PAGE:
                break
            since = keys[-1] + 1
        return applied

    async def _apply(self, read: Callable[[tuple[int, str], int], Awaitable[list[Change]]],
                     size: int, paced: bool) -> int:
        """Apply `read`'s keyset pages (after the last (key, user) read, up to `size` rows)."""
        loop = asyncio.get_running_loop()
        applied, after, began = 0, (FEED_START, ""), loop.time()
        while page := await read(after, size):
            await self._upsert(page)
            applied += len(page)
            after = (page[-1].key, page[-1].entry.user_id)
            if len(page) < size:
                break
            await self._lease.claim(LEASE)
            # Duty cycle: rest as long as the page took, so requests queued behind a page's
            # decoding and packing are served before the next one (read latency over repair speed).
            await asyncio.sleep(loop.time() - began if paced else 0)
            began = loop.time()
        return applied

    async def _upsert(self, page: list[Change]) -> None:
        await self._board.upsert(change.entry for change in page if not change.deleted)
        for change in page:
            if change.deleted:
                await self._board.remove(change.entry.user_id)

    async def run(self) -> None:
        """A pass every interval; at once when the bus says it (re)connected or a write to the
        board failed here; soon again while another process holds the lease."""
        async with self._bus.subscribe() as messages, asyncio.TaskGroup() as group:
            group.create_task(self._listen(messages))
            while True:
                self._wanted.clear()
                try:
                    applied = await self.reconcile()
                except (LiveUnavailable, ServiceUnavailable) as exc:
                    log.warning("read model not reconciled: %s", exc)
                    applied = 0
                    # every failed write wakes this loop: during an outage, one try per pause is enough
                    await asyncio.sleep(RETRY)
                busy = applied is None and not self._freshness.trusted
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wanted.wait(), RETRY if busy else self._interval)

    async def _listen(self, messages: AsyncIterator[str]) -> None:
        async for message in messages:
            if message == RESYNC:
                self._resynced = True
                self._wanted.set()
