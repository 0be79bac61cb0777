"""The source of truth: the Store protocol and `open_store(url)`, PostgreSQL or SQLite.

Implementations raise only the domain errors of app.errors: ServiceUnavailable when the
database cannot be reached (nothing was written), UserDeleted for a deleted user.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

from app.boards import BoardConfig
from app.domain import AuditEvent, Change, Entry, Increment, IncrementResult, Standing
from app.store.batch import Outcome


class Store(Protocol):
    async def apply_increments(self, batch: Sequence[Increment], now: datetime | None = None,
                               watched: Collection[tuple[str, str]] = ()) -> list[Outcome]:
        """Commit a batch in one transaction, each increment with its own outcome: applied, or a
        replay (applied=False) of a recorded or earlier-in-batch actionId, or the error that refused
        it alone. Raises ServiceUnavailable only when nothing of the batch was written.

        The same transaction adds the applied points to every board and period that counts
        them, with the boards as it reads them and the period keys of `now` (default: now). The
        applied results carry the rows it left on the `watched` (board, period key) pairs, and
        each other pair it changed held back (see IncrementResult.pairs)."""

    async def board_entries(self, board_id: str, key: str, user_ids: Sequence[str]) -> list[Entry]:
        """The live users' rows among `user_ids` on one (board, period key), in no order: the rows
        of a pair a batch held back that turned out to be watched."""

    async def recorded(self, action_ids: Collection[str]) -> dict[str, IncrementResult]:
        """The recorded results of those actionIds that were ever applied."""

    async def save_user(self, user_id: str, display_name: str) -> Entry:
        """Create or rename a user (UserDeleted if deleted)."""

    async def delete_user(self, user_id: str) -> bool:
        """Erase the name and hide the user from every read; False if never known."""

    async def ranked(self, offset: int, limit: int) -> list[Entry]:
        """Live users in rank order, skipping the first `offset`."""

    async def standing(self, user_id: str, around: int) -> Standing | None:
        """A live user's rank and the entries around it; None if unknown or deleted."""

    async def ping(self) -> None:
        """Raise ServiceUnavailable unless the database answers."""


class AuditLog(Protocol):
    """The audit log of applied increments, and the anomaly flags computed from it."""

    async def events(self, user_id: str, before: int | None, limit: int) -> list[AuditEvent] | None:
        """Up to `limit` of the user's events newest first, with ids below `before`; None if never known."""

    async def flag_if_over(self, user_id: str, ceiling: int, window_seconds: int) -> int | None:
        """Flag the user when the points gained in the window (and since the last clear) exceed
        `ceiling`; return those points if this call raised the flag, None otherwise."""

    async def flagged(self, user_id: str) -> bool:
        """Whether the user has a flag no operator has cleared."""

    async def clear_flag(self, user_id: str) -> bool:
        """Clear the user's flag; False if there was none."""


class ChangeFeed(Protocol):
    """Every user's latest state in the order it changed: what the read model repair reads.

    A writer needs to do nothing for it (a trigger keys each insert and update), so the repair
    costs what changed since its last horizon, not the number of users.
    """

    async def change_horizon(self) -> int:
        """A key every change not yet visible will get at least: all changes below it are committed."""

    async def changes(self, since: int, after: tuple[int, str], limit: int) -> list[Change]:
        """Up to `limit` users changed at or after key `since`, in (key, user id) order after `after`;
        deleted users included (their `deleted` is set)."""

    async def change_keys(self, since: int, limit: int) -> list[int]:
        """Up to `limit` distinct keys at or after `since` that some user's row holds, ascending
        (without reading the rows: the repair asks the read model which ones it lacks)."""

    async def changes_of(self, keys: Sequence[int], after: tuple[int, str], limit: int) -> list[Change]:
        """As `changes`, for the users whose key is one of `keys`."""


class BoardStore(Protocol):
    """Boards and the scores of their (board, period key) pairs; main's `all` is the Store's."""

    async def boards(self) -> list[BoardConfig]:
        """Every board, main included, by id."""

    async def save_board(self, board: BoardConfig) -> BoardConfig:
        """Create or replace a board (ValidationFailed for a time zone the database does not know)."""

    async def delete_board(self, board_id: str) -> bool:
        """Delete a board and its scores; False if there was none."""

    async def board_ranked(self, board_id: str, key: str, offset: int, limit: int) -> list[Entry]:
        """Live users of one (board, period key) in rank order, skipping the first `offset`."""

    async def board_standing(self, board_id: str, key: str, user_id: str, around: int) -> Standing | None:
        """A live user's rank on one (board, period key) and the entries around; None if absent."""


class Database(Store, AuditLog, ChangeFeed, BoardStore, Protocol):
    """What open_store yields: every protocol, from one connection pool."""


@asynccontextmanager
async def open_store(url: str, query_timeout: float) -> AsyncIterator[Database]:
    """Open the store named by `url`'s scheme; the driver is imported only when used."""
    if urlsplit(url).scheme == "sqlite":
        from app.store.sqlite import open_sqlite

        async with open_sqlite(url, query_timeout) as sqlite_store:
            yield sqlite_store
    else:
        from app.store.postgres import open_postgres

        async with open_postgres(url, query_timeout) as postgres_store:
            yield postgres_store
