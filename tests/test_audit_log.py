"""The AuditLog protocol on both databases: the sliding window, clears, flags and event pages."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.domain import Increment
from app.store import Database
from app.store.sqlite import SqliteStore
from tests.conftest import PostgresSchema

HOUR = 3600


@dataclass
class Opened:
    store: Database
    age_events: Callable[[str, int], None]  # (user_id, seconds): move their events into the past


def _sqlite_ager(path: str) -> Callable[[str, int], None]:
    def age(user_id: str, seconds: int) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE score_events SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at, ?)"
                         " WHERE user_id = ?", (f"-{seconds} seconds", user_id))
    return age


def _postgres_ager(schema: PostgresSchema) -> Callable[[str, int], None]:
    def age(user_id: str, seconds: int) -> None:
        schema.execute(f"UPDATE {schema.name}.score_events SET created_at = created_at - interval '{seconds} seconds'"
                       f" WHERE user_id = '{user_id}'")  # test-chosen ids only
    return age


@pytest.fixture
def opened(request: pytest.FixtureRequest, database: Database, tmp_path: Path) -> Opened:
    if isinstance(database, SqliteStore):
        return Opened(database, _sqlite_ager(f"{tmp_path}/store.db"))
    return Opened(database, _postgres_ager(request.getfixturevalue("postgres_schema")))


async def _apply(store: Database, user_id: str, *deltas: int) -> None:
    for delta in deltas:
        count = len(await store.events(user_id, None, 1000) or [])
        await store.apply_increments([Increment(user_id, f"{user_id}-{count}", "x", delta, "game-1")])


async def test_flag_rises_once_when_the_window_exceeds_the_ceiling(opened: Opened) -> None:
    store = opened.store
    await _apply(store, "u1", 10, 10)
    assert await store.flag_if_over("u1", 20, HOUR) is None  # 20 is not over 20
    assert not await store.flagged("u1")
    await _apply(store, "u1", 5)
    assert await store.flag_if_over("u1", 20, HOUR) == 25
    assert await store.flagged("u1")
    assert await store.flag_if_over("u1", 20, HOUR) is None  # already flagged: not raised again


async def test_only_points_gained_in_the_window_count(opened: Opened) -> None:
    store = opened.store
    await _apply(store, "u1", 100)
    opened.age_events("u1", HOUR + 60)
    await _apply(store, "u1", 10, -50, 10)  # a penalty does not offset gains
    assert await store.flag_if_over("u1", 25, HOUR) is None
    await _apply(store, "u1", 10)
    assert await store.flag_if_over("u1", 25, HOUR) == 30
    assert not await store.flagged("u2")


async def test_a_clear_starts_a_new_window(opened: Opened) -> None:
    store = opened.store
    await _apply(store, "u1", 30)
    assert await store.flag_if_over("u1", 25, HOUR) == 30
    assert await store.clear_flag("u1")
    assert not await store.clear_flag("u1")
    assert not await store.flagged("u1")
    assert await store.flag_if_over("u1", 25, HOUR) is None  # the accepted points do not count again
    await _apply(store, "u1", 20, 10)
    assert await store.flag_if_over("u1", 25, HOUR) == 30
    assert await store.flagged("u1")


async def test_events_page_by_id_newest_first(opened: Opened) -> None:
    store = opened.store
    await _apply(store, "u1", 1, 2, 3)
    await _apply(store, "u2", 7)
    page = await store.events("u1", None, 2)
    assert page is not None and [e.delta for e in page] == [3, 2]
    assert [e.score_after for e in page] == [6, 3]
    rest = await store.events("u1", page[-1].id, 2)
    assert rest is not None and [(e.delta, e.action_id, e.caller) for e in rest] == [(1, "u1-0", "game-1")]
    assert rest[0].at.tzinfo is not None
    assert await store.events("u1", rest[0].id, 2) == []
    assert await store.events("nobody", None, 2) is None
    assert not await store.clear_flag("nobody")
