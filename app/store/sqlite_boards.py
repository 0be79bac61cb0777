"""SQLite: boards, the batch's board write and the reads of (board, period key) scores.

Mixed into SqliteStore. Period keys are computed in Python (zoneinfo) inside the batch's
BEGIN IMMEDIATE, from the boards read in that same transaction.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from app.boards import BoardConfig
from app.domain import Entry, Increment, PairScore, Standing
from app.store import board_queries as bq
from app.store import queries as q


def _sql(statement: str) -> str:
    return statement.replace("%s", "?")


def board_rows(boards: Sequence[BoardConfig], events: Sequence[tuple[int, Increment]],
               now: datetime) -> list[tuple[str, str, str, int, int]]:
    """(board, period key, user, points, last event id) for every pair that counts the events."""
    rows: dict[tuple[str, str, str], tuple[int, int]] = {}
    for board in boards:
        keys = board.keys_at(now)
        for event_id, inc in events:
            if not keys or not board.counts(inc.action):
                continue
            for key in keys:
                points, _ = rows.get((board.board_id, key, inc.user_id), (0, 0))
                rows[(board.board_id, key, inc.user_id)] = (points + inc.delta, event_id)
    return [(*pair, points, last) for pair, (points, last) in sorted(rows.items())]


class SqliteBoards:
    _conn: aiosqlite.Connection
    if TYPE_CHECKING:  # SqliteStore's
        def _session(self, transaction: bool = False) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

    async def _all_boards(self) -> list[BoardConfig]:
        async with self._conn.execute(bq.BOARDS) as cursor:
            return [bq.board(row) for row in await cursor.fetchall()]

    async def _write_boards(self, events: Sequence[tuple[int, Increment]], now: datetime,
                            watched: Collection[tuple[str, str]]) -> list[PairScore]:
        """Inside the batch's transaction: add the applied events' points to every pair; the rows
        left on the watched pairs, the other pairs held back."""
        rows = board_rows(await self._all_boards(), events, now) if events else []
        if not rows:  # none on a service with only main's all period
            return []
        async with self._conn.execute(bq.SQLITE_UPSERT, (json.dumps(rows),)) as cursor:
            return bq.watched_only([bq.pair_score(row) for row in await cursor.fetchall()], watched)

    async def boards(self) -> list[BoardConfig]:
        async with self._session():
            return await self._all_boards()

    async def save_board(self, board: BoardConfig) -> BoardConfig:
        actions = None if board.actions is None else json.dumps(list(board.actions))
        async with self._session(transaction=True):
            await self._conn.execute(bq.SQLITE_SAVE, (board.board_id, board.title, actions,
                                                      json.dumps(list(board.periods)), board.time_zone))
        return board

    async def delete_board(self, board_id: str) -> bool:
        async with self._session(transaction=True):
            await self._conn.execute(_sql(bq.DELETE_SCORES), (board_id,))
            cursor = await self._conn.execute(_sql(bq.DELETE_BOARD), (board_id,))
            return cursor.rowcount > 0

    async def board_ranked(self, board_id: str, key: str, offset: int, limit: int) -> list[Entry]:
        async with self._session():
            return [q.entry(row) async for row in self._rows(bq.BOARD_RANKED, (board_id, key, limit, offset))]

    async def board_entries(self, board_id: str, key: str, user_ids: Sequence[str]) -> list[Entry]:
        async with self._session():
            return [q.entry(row) async for row in self._rows(
                bq.SQLITE_BOARD_USERS, (board_id, key, json.dumps(list(user_ids))))]

    async def board_standing(self, board_id: str, key: str, user_id: str, around: int) -> Standing | None:
        async with self._session():
            found = [q.entry(row) async for row in self._rows(bq.BOARD_USER, (board_id, key, user_id))]
            if not found:
                return None
            entry = found[0]
            [ahead] = [row[0] async for row in self._rows(
                bq.BOARD_AHEAD, (board_id, key, entry.score, entry.score, entry.seq))]
            rank = 1 + int(ahead)
            window: list[Entry] = []
            if around:
                offset, limit = q.around_window(rank, around)
                window = [q.entry(row) async for row in self._rows(bq.BOARD_RANKED, (board_id, key, limit, offset))]
        return Standing(entry=entry, rank=rank, around=tuple(window))

    async def _rows(self, statement: str, params: tuple[Any, ...]) -> AsyncIterator[Any]:
        async with self._conn.execute(_sql(statement), params) as cursor:
            for row in await cursor.fetchall():
                yield row
