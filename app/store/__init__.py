"""The source of truth: the Store protocol and `open_store(url)`, PostgreSQL or SQLite.

Implementations raise only the domain errors of app.errors: ServiceUnavailable when the
database cannot be reached (nothing was written), UserDeleted for a deleted user.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol
from urllib.parse import urlsplit

from app.domain import Entry, Increment, IncrementResult, Standing


class Store(Protocol):
    async def apply_increment(self, increment: Increment) -> IncrementResult:
        """Commit the event and the new score in one transaction; a known actionId
        returns the recorded result with applied=False and changes nothing."""

    async def recorded(self, action_id: str) -> IncrementResult | None:
        """The recorded result of an actionId, if it was ever applied."""

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


@asynccontextmanager
async def open_store(url: str, query_timeout: float) -> AsyncIterator[Store]:
    """Open the store named by `url`'s scheme; the driver is imported only when used."""
    if urlsplit(url).scheme == "sqlite":
        from app.store.sqlite import open_sqlite

        async with open_sqlite(url, query_timeout) as sqlite_store:
            yield sqlite_store
    else:
        from app.store.postgres import open_postgres

        async with open_postgres(url, query_timeout) as postgres_store:
            yield postgres_store
