"""The (board, period key) read models' writes: a batch's, and builds from the database in the
background, once per pair.

A build empties the pair, copies its rows in pages and marks it complete, unless it was forgotten
meanwhile (its mark then names an old generation). Writes go on during a build: the board's
upsert never moves a user back, so a row read before a newer write, or a write that lands before
the row is read, leaves the newest state either way (the argument of app/reconcile.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from app.domain import Entry, IncrementResult
from app.errors import ServiceUnavailable
from app.live import Board, LiveUnavailable, PairRows, Pairs
from app.periods import Clock, key_expiry
from app.store import BoardStore

log = logging.getLogger(__name__)
PAGE = 1000  # rows per query and per script call; pages by offset: a build is rare and in the background


class PairBuilds:
    def __init__(self, store: BoardStore, board: Board, pairs: Pairs, clock: Clock) -> None:
        self._store, self._board, self._pairs, self._clock = store, board, pairs, clock
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    def start(self, board_id: str, key: str) -> None:
        """Build the pair unless a build of it is running here already."""
        pair = (board_id, key)
        if pair not in self._running:
            task = self._running[pair] = asyncio.create_task(self._build(board_id, key), name="pair-build")
            task.add_done_callback(lambda _: self._running.pop(pair, None))

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _build(self, board_id: str, key: str) -> None:
        try:
            token = await self._pairs.start_build(board_id, key)
            expires, ttl = key_expiry(key, self._clock())
            offset = 0
            while page := await self._store.board_ranked(board_id, key, offset, PAGE):
                await self._board.upsert([], pairs=[PairRows(board_id, key, page, expires, ttl)])
                offset += len(page)
                if len(page) < PAGE:
                    break
            if not await self._pairs.finish_build(board_id, key, token, expires, ttl):
                log.info("read model of board %s period %s forgotten while built: a later read rebuilds it",
                         board_id, key)
        except (LiveUnavailable, ServiceUnavailable) as exc:  # reads use the database; the next one retries
            log.warning("read model of board %s period %s not built: %s", board_id, key, exc)
        except Exception:
            log.exception("read model of board %s period %s not built", board_id, key)


def pair_writes(results: list[IncrementResult], now: datetime) -> tuple[list[PairRows], bool]:
    """The pairs' read-model rows of a batch's applied results (each user's newest per pair; no
    rows for a pair held back), and whether some result could not say which pairs it changed."""
    newest: dict[tuple[str, str], dict[str, Entry]] = {}
    held: dict[tuple[str, str], None] = {}
    unknown = False
    for result in results:
        if result.pairs is None:
            unknown = True
        for pair in result.pairs or ():
            if pair.entry is None:
                held[(pair.board_id, pair.key)] = None
                continue
            rows = newest.setdefault((pair.board_id, pair.key), {})
            old = rows.get(pair.entry.user_id)
            if old is None or pair.entry.seq > old.seq:
                rows[pair.entry.user_id] = pair.entry
    return [*(PairRows(board_id, key, list(rows.values()), *key_expiry(key, now))
              for (board_id, key), rows in newest.items()),
            *(PairRows(board_id, key, None, *key_expiry(key, now)) for board_id, key in held)], unknown
