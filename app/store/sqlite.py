"""Embedded SQLite store through aiosqlite: one connection (WAL), one transaction at a time."""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiosqlite

from app.domain import AuditEvent, Change, Entry, Increment, IncrementResult, Standing
from app.errors import ServiceUnavailable, UserDeleted
from app.store import queries as q

NEXT_SEQ = "UPDATE score_seq SET value = value + 1 RETURNING value"
INSERT_USER = "INSERT INTO users (user_id, display_name, seq) VALUES (?, ?, ?)"
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
# Inserts (or re-raises a cleared) flag only when the window's points exceed the ceiling;
# RETURNING gives a row only to the call that raised it. The window is a 'now' modifier.
FLAG_IF_OVER = f"""
    INSERT INTO user_flags (user_id, points)
    SELECT ?, gained FROM (
        SELECT COALESCE(sum(delta), 0) AS gained FROM score_events
        WHERE user_id = ? AND delta > 0 AND created_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)
          AND created_at > COALESCE((SELECT cleared_at FROM user_flags WHERE user_id = ?), '')
    ) WHERE gained > ?
    ON CONFLICT (user_id) DO UPDATE SET points = excluded.points, flagged_at = {NOW}, cleared_at = NULL
    WHERE user_flags.cleared_at IS NOT NULL
    RETURNING points"""
HORIZON = "SELECT value + 1 FROM change_counter"
CLEAR_FLAG = f"UPDATE user_flags SET cleared_at = {NOW} WHERE user_id = ? AND cleared_at IS NULL"


def _sql(statement: str) -> str:
    return statement.replace("%s", "?")


CHANGES = _sql(q.changes("changed_seq"))


@asynccontextmanager
async def open_sqlite(url: str, query_timeout: float) -> AsyncIterator[SqliteStore]:
    path = urlsplit(url).path[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    try:
        conn = await aiosqlite.connect(path, timeout=query_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise ServiceUnavailable(f"cannot open {path}: {exc}") from exc
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        yield SqliteStore(conn)
    finally:
        await conn.close()


class SqliteStore:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        # One connection: a lock keeps reads from seeing another task's uncommitted writes.
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _session(self, transaction: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                if not transaction:
                    yield self._conn
                    return
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
                await self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise ServiceUnavailable(f"database unavailable: {exc}") from exc

    async def _one(self, statement: str, params: tuple[Any, ...]) -> Any:
        async with self._conn.execute(_sql(statement), params) as cursor:
            return await cursor.fetchone()

    async def _next_seq(self) -> int:
        return int((await self._one(NEXT_SEQ, ()))[0])

    async def apply_increment(self, increment: Increment) -> IncrementResult:
        async with self._session(transaction=True):
            # Transactions are serialised, so this check is exact under concurrency.
            recorded = await self._one(q.RECORDED, (increment.action_id,))
            if recorded is not None:
                return q.recorded_result(recorded)
            return await self._apply(increment)

    async def _apply(self, inc: Increment) -> IncrementResult:
        state = await self._one(q.USER_STATE, (inc.user_id,))
        if state is None:
            await self._conn.execute(INSERT_USER, (inc.user_id, None, await self._next_seq()))
            state = (0, False, None)
        if state[1]:
            raise UserDeleted(f"user {inc.user_id!r} was deleted")
        new_score = q.checked_score(state[0] + inc.delta)
        seq = await self._next_seq()
        await self._conn.execute(
            _sql(q.INSERT_EVENT),
            (seq, inc.action_id, inc.user_id, inc.action, inc.delta, new_score, inc.caller),
        )
        await self._conn.execute(_sql(q.SET_SCORE), (new_score, seq, inc.user_id))
        return IncrementResult(
            user_id=inc.user_id, action_id=inc.action_id, action=inc.action, delta=inc.delta,
            new_score=new_score, applied=True, seq=seq, display_name=state[2],
        )

    async def recorded(self, action_id: str) -> IncrementResult | None:
        async with self._session():
            row = await self._one(q.RECORDED, (action_id,))
        return None if row is None else q.recorded_result(row)

    async def save_user(self, user_id: str, display_name: str) -> Entry:
        async with self._session(transaction=True):
            known = await self._one(q.KNOWN_USER, (user_id,))
            if known is None:
                await self._conn.execute(INSERT_USER, (user_id, display_name, await self._next_seq()))
            elif known[0]:
                raise UserDeleted(f"user {user_id!r} was deleted")
            else:
                await self._conn.execute(_sql(q.RENAME), (display_name, user_id))
            return q.entry(await self._one(q.LIVE_USER, (user_id,)))

    async def delete_user(self, user_id: str) -> bool:
        async with self._session(transaction=True):
            cursor = await self._conn.execute(_sql(q.DELETE_USER), (user_id,))
            return cursor.rowcount > 0

    async def ranked(self, offset: int, limit: int) -> list[Entry]:
        async with self._session():
            return await self._ranked(offset, limit)

    async def _ranked(self, offset: int, limit: int) -> list[Entry]:
        async with self._conn.execute(_sql(q.RANKED), (limit, offset)) as cursor:
            return [q.entry(row) for row in await cursor.fetchall()]

    async def standing(self, user_id: str, around: int) -> Standing | None:
        async with self._session():
            row = await self._one(q.LIVE_USER, (user_id,))
            if row is None:
                return None
            entry = q.entry(row)
            rank = 1 + (await self._one(q.AHEAD, (entry.score, entry.score, entry.seq)))[0]
            window = await self._ranked(*q.around_window(rank, around)) if around else []
        return Standing(entry=entry, rank=rank, around=tuple(window))

    async def ping(self) -> None:
        async with self._session():
            await self._one("SELECT 1", ())

    async def events(self, user_id: str, before: int | None, limit: int) -> list[AuditEvent] | None:
        async with self._session():
            params = (user_id, q.INT64_MAX if before is None else before, limit)
            async with self._conn.execute(_sql(q.EVENTS), params) as cursor:
                rows = await cursor.fetchall()
            if not rows and await self._one(q.KNOWN_USER, (user_id,)) is None:
                return None
        return [q.audit_event(row) for row in rows]

    async def flag_if_over(self, user_id: str, ceiling: int, window_seconds: int) -> int | None:
        async with self._session(transaction=True):
            row = await self._one(FLAG_IF_OVER, (user_id, user_id, f"-{window_seconds} seconds", user_id, ceiling))
        return None if row is None else int(row[0])

    async def flagged(self, user_id: str) -> bool:
        async with self._session():
            return await self._one(q.FLAGGED, (user_id,)) is not None

    async def clear_flag(self, user_id: str) -> bool:
        async with self._session(transaction=True):
            cursor = await self._conn.execute(CLEAR_FLAG, (user_id,))
            return cursor.rowcount > 0

    # The change feed (ChangeFeed): keys come from a counter that triggers bump in commit order.

    async def change_horizon(self) -> int:
        async with self._session():
            return int((await self._one(HORIZON, ()))[0])

    async def changes(self, since: int, after: tuple[int, str], limit: int) -> list[Change]:
        async with self._session():
            async with self._conn.execute(CHANGES, (since, *after, limit)) as cursor:
                return [q.change(row) for row in await cursor.fetchall()]
