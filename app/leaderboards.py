"""Boards as the API sees them: management, which period a read means, and the reads themselves.

main's `all` period is read through the callables the Scoreboard gives (its read model); every
other (board, period key) pair from its own read model when this process trusts the live backend
and the pair is built, else from the database, which starts a build of it (app/pair_builds.py).
The configurations are cached for CONFIG_TTL: a board changed in another process is seen here
within that time (writes read them in their own transaction instead).
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from app.boards import MAIN, BoardConfig
from app.domain import Entry, Standing
from app.errors import NotFound, ValidationFailed
from app.live import Freshness, LiveUnavailable, Pairs, ReadModelIncomplete
from app.pair_builds import PairBuilds
from app.periods import ALL, Clock, day_key, is_future, key_expiry, local_day
from app.store import BoardStore

CONFIG_TTL = 1.0  # seconds a process trusts its copy of the board configurations

MainTop = Callable[[int], Awaitable[list[Entry]]]
MainStanding = Callable[[str, int], Awaitable[Standing]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PairModels:
    """What the pairs' reads need of the live backend, and of the Scoreboard."""

    pairs: Pairs
    builds: PairBuilds
    freshness: Freshness
    announced: Callable[[], Awaitable[None]]  # this process's committed batches are in the read models


class Boards:
    def __init__(self, store: BoardStore, main_top: MainTop, main_standing: MainStanding, clock: Clock,
                 models: PairModels) -> None:
        self._store = store
        self._main_top, self._main_standing = main_top, main_standing
        self._models = models
        self.clock = clock
        self._configs: dict[str, BoardConfig] = {}
        self._loaded_at = float("-inf")
        self._changes = 0  # a read that started before a change of ours must not be cached

    async def all(self) -> list[BoardConfig]:
        return list((await self._current()).values())

    async def get(self, board_id: str) -> BoardConfig:
        board = (await self._current()).get(board_id)
        if board is None:
            raise NotFound(f"no board {board_id!r}")
        return board

    async def save(self, board: BoardConfig) -> BoardConfig:
        if board.board_id == MAIN and (board.actions is not None or ALL not in board.periods):
            # main's `all` period is GET /top: every action, always kept
            raise ValidationFailed("main counts every action and keeps its all-time period", {"fields": {
                "actions": ["main counts every action: null"], "periods": ["main keeps the all period"]}})
        saved = await self._store.save_board(board.ordered())
        self._forget()
        await self._forget_pairs(board.board_id)
        return saved

    async def delete(self, board_id: str) -> None:
        if board_id == MAIN:
            raise ValidationFailed("the board main cannot be deleted", {"fields": {"boardId": ["main is permanent"]}})
        if not await self._store.delete_board(board_id):
            raise NotFound(f"no board {board_id!r}")
        self._forget()
        await self._forget_pairs(board_id)

    async def period_key(self, board_id: str, period: str, at: date | None) -> tuple[BoardConfig, str]:
        """The board and the key of its `period` containing the local day `at` (default today);
        NotFound for an unknown board, a period it does not have, or a future period."""
        board = await self.get(board_id)
        if period not in board.periods:
            raise NotFound(f"board {board_id!r} has no {period} period")
        now = self.clock()
        day = local_day(now, board.zone) if at is None else at
        if is_future(period, day, now, board.zone):
            raise NotFound(f"the {period} period containing {day.isoformat()} has not started")
        return board, day_key(period, day)

    async def top(self, board_id: str, key: str, limit: int) -> list[Entry]:
        if board_id == MAIN and key == ALL:
            return await self._main_top(limit)
        now = self.clock().timestamp()
        entries = await self._from_model(board_id, key, lambda: self._models.pairs.top(board_id, key, limit, now))
        return entries if entries is not None else await self._store.board_ranked(board_id, key, 0, limit)

    async def standing(self, board_id: str, key: str, user_id: str, around: int) -> Standing:
        if board_id == MAIN and key == ALL:
            return await self._main_standing(user_id, around)
        now = self.clock().timestamp()
        standing = await self._from_model(
            board_id, key, lambda: self._models.pairs.standing(board_id, key, user_id, around, now))
        if standing is None:  # a miss may be a write the model lost: the database decides
            standing = await self._store.board_standing(board_id, key, user_id, around)
        if standing is None:
            raise NotFound(f"no score for user {user_id!r} on board {board_id!r} in period {key}")
        return standing

    async def _from_model(self, board_id: str, key: str, read: Callable[[], Awaitable[T]]) -> T | None:
        """The pair's read model's answer when it can be trusted; None otherwise (a pair not built
        starts a build: until it is marked, the database answers)."""
        await self._models.announced()
        if not self._models.freshness.trusted:
            return None
        try:
            return await read()
        except ReadModelIncomplete:
            expires, _ = key_expiry(key, self.clock())
            if expires is None or expires > self.clock().timestamp():  # an expired pair stays in the database
                self._models.builds.start(board_id, key)
        except LiveUnavailable:
            pass
        return None

    async def _forget_pairs(self, board_id: str) -> None:
        """A changed or deleted board's pairs are rebuilt (a board deleted and created again must not
        find its old scores); if that fails, the failed-write path makes every process forget them."""
        try:
            await self._models.pairs.forget(board_id)
        except LiveUnavailable:
            self._models.freshness.write_failed()

    async def _current(self) -> dict[str, BoardConfig]:
        if time.monotonic() - self._loaded_at <= CONFIG_TTL:
            return self._configs
        changes, started = self._changes, time.monotonic()
        configs = {board.board_id: board for board in await self._store.boards()}
        if changes == self._changes:
            self._configs, self._loaded_at = configs, started
        return configs

    def _forget(self) -> None:
        self._changes += 1
        self._loaded_at = float("-inf")
