"""In-process read models of (board, period key) pairs: one MemoryBoard each, names and deletions
shared with main's board, each trusted once built until it expires or is forgotten."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import count
from typing import TYPE_CHECKING

from app.domain import Entry, Standing
from app.live import PairRows, ReadModelIncomplete

if TYPE_CHECKING:
    from app.live.memory import MemoryBoard

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Mark:
    token: str
    expires: float | None


class MemoryPairs:
    def __init__(self, main: MemoryBoard) -> None:
        self._main = main
        self._pairs: dict[Pair, MemoryBoard] = {}
        self._marks: dict[Pair, _Mark] = {}
        self._building: dict[Pair, str] = {}
        self._builds = count(1)
        self._generation = 0  # forgetting every pair at once
        self._boards: dict[str, int] = {}  # forgetting one board's pairs

    def write(self, pairs: Iterable[PairRows]) -> list[Pair]:
        """Called by main's upsert: each pair's rows into its board, a removed user left out, if
        the pair is watched (a build starts empty: earlier rows would be dropped); the held-back
        pairs that are watched."""
        wanted = []
        for rows in pairs:
            pair = (rows.board_id, rows.key)
            if pair in self._marks or pair in self._building:
                if rows.entries is None:
                    wanted.append(pair)
                else:
                    self._pair(pair).upsert_now(rows.entries)
        return wanted

    def watched(self) -> frozenset[Pair]:
        """The pairs built or being built."""
        return frozenset(self._marks.keys() | self._building.keys())

    async def top(self, board_id: str, key: str, limit: int, now: float) -> list[Entry]:
        return self._named(await self._trusted((board_id, key), now).top(limit))

    async def standing(self, board_id: str, key: str, user_id: str, around: int, now: float) -> Standing | None:
        standing = await self._trusted((board_id, key), now).standing(user_id, around)
        if standing is None:
            return None
        [entry] = self._named([standing.entry])
        return Standing(entry, standing.rank, tuple(self._named(list(standing.around))))

    async def start_build(self, board_id: str, key: str) -> str:
        pair = (board_id, key)
        self._pairs.pop(pair, None)
        self._marks.pop(pair, None)
        build = self._building[pair] = f"{self._token(board_id)}:{next(self._builds)}"
        return build

    async def finish_build(self, board_id: str, key: str, token: str, expires: float | None,
                           ttl: int | None) -> bool:
        pair = (board_id, key)
        if self._building.get(pair) != token or not token.startswith(self._token(board_id) + ":"):
            return False
        del self._building[pair]
        await self._pair(pair).set_mark(0)  # the pair's own board reads only once built
        self._marks[pair] = _Mark(token, expires)
        return True

    async def forget(self, board_id: str | None = None) -> None:
        if board_id is None:
            self._generation += 1
            self._marks.clear()
            return
        self._boards[board_id] = self._boards.get(board_id, 0) + 1
        for pair in [pair for pair in self._marks if pair[0] == board_id]:
            del self._marks[pair]

    def _token(self, board_id: str) -> str:
        return f"{self._generation}:{self._boards.get(board_id, 0)}"

    def _pair(self, pair: Pair) -> MemoryBoard:
        board = self._pairs.get(pair)
        if board is None:
            board = self._pairs[pair] = self._main.sharing_removals()
        return board

    def _trusted(self, pair: Pair, now: float) -> MemoryBoard:
        mark = self._marks.get(pair)
        if mark is not None and mark.expires is not None and mark.expires <= now:
            del self._marks[pair]  # expired: the database keeps the period, memory lets it go
            self._pairs.pop(pair, None)
            mark = None
        if mark is None:
            raise ReadModelIncomplete(f"the read model of {pair} is not built")
        return self._pair(pair)

    def _named(self, entries: list[Entry]) -> list[Entry]:
        """The entries with main's name when it is as new (names are main's; a build brings its own)."""
        named = []
        for entry in entries:
            main = self._main.entry(entry.user_id)
            if main is not None and main.name_version >= entry.name_version:
                entry = dataclasses.replace(entry, display_name=main.display_name, name_version=main.name_version)
            named.append(entry)
        return named
