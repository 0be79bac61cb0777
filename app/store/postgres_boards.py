"""PostgreSQL: boards and the reads of their (board, period key) scores (mixed into PostgresStore)."""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import psycopg2.errors

from app.boards import BoardConfig
from app.domain import Entry, Standing
from app.errors import ValidationFailed
from app.store import board_queries as bq
from app.store import queries as q

# The database's own tz database decides too: the write statement calls timezone() with the name.
CHECK_ZONE = "SELECT timezone(%s, now())"


class PostgresBoards:
    if TYPE_CHECKING:  # PostgresStore's
        def _cursor(self, transaction: bool = False) -> AbstractAsyncContextManager[Any]: ...

    async def boards(self) -> list[BoardConfig]:
        async with self._cursor() as cur:
            await cur.execute(bq.BOARDS)
            return [bq.board(row) for row in await cur.fetchall()]

    async def save_board(self, board: BoardConfig) -> BoardConfig:
        async with self._cursor(transaction=True) as cur:
            try:
                await cur.execute(CHECK_ZONE, (board.time_zone,))
            except psycopg2.errors.InvalidParameterValue:
                raise ValidationFailed("unknown time zone", {"fields": {"timeZone": ["unknown time zone"]}}) from None
            actions = None if board.actions is None else list(board.actions)
            await cur.execute(bq.POSTGRES_SAVE, (board.board_id, board.title, actions, list(board.periods),
                                                 board.time_zone))
        return board

    async def delete_board(self, board_id: str) -> bool:
        async with self._cursor(transaction=True) as cur:
            await cur.execute(bq.DELETE_SCORES, (board_id,))
            await cur.execute(bq.DELETE_BOARD, (board_id,))
            return bool(cur.rowcount)

    async def board_ranked(self, board_id: str, key: str, offset: int, limit: int) -> list[Entry]:
        async with self._cursor() as cur:
            await cur.execute(bq.BOARD_RANKED, (board_id, key, limit, offset))
            return [q.entry(row) for row in await cur.fetchall()]

    async def board_entries(self, board_id: str, key: str, user_ids: Sequence[str]) -> list[Entry]:
        async with self._cursor() as cur:
            await cur.execute(bq.POSTGRES_BOARD_USERS, (board_id, key, list(user_ids)))
            return [q.entry(row) for row in await cur.fetchall()]

    async def board_standing(self, board_id: str, key: str, user_id: str, around: int) -> Standing | None:
        async with self._cursor() as cur:
            await cur.execute(bq.BOARD_USER, (board_id, key, user_id))
            row = await cur.fetchone()
            if row is None:
                return None
            entry = q.entry(row)
            await cur.execute(bq.BOARD_AHEAD, (board_id, key, entry.score, entry.score, entry.seq))
            rank = 1 + (await cur.fetchone())[0]
            window: list[Entry] = []
            if around:
                offset, limit = q.around_window(rank, around)
                await cur.execute(bq.BOARD_RANKED, (board_id, key, limit, offset))
                window = [q.entry(r) for r in await cur.fetchall()]
        return Standing(entry=entry, rank=rank, around=tuple(window))
