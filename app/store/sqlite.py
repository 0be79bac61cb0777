"""Embedded SQLite store through aiosqlite: one connection (WAL), one transaction at a time."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiosqlite

from app.domain import AuditEvent, Change, Entry, Increment, IncrementResult, Standing
from app.errors import ServiceUnavailable, UserDeleted
from app.store import queries as q
from app.store.batch import Outcome, Plan, UserState, plan, with_pairs
from app.store.sqlite_boards import SqliteBoards

NEXT_SEQ = "UPDATE score_seq SET value = value + 1 RETURNING value"
TAKE_SEQS = "UPDATE score_seq SET value = value + ? RETURNING value"
USER_STATES = """
    SELECT user_id, score, deleted_at IS NOT NULL, display_name, name_version FROM users WHERE user_id IN ({})"""
# After a batch's writes: the change-feed key each changed user's row ended with.
CHANGE_KEYS_OF = "SELECT user_id, changed_seq FROM users WHERE user_id IN ({})"
RECORDED_MANY = """
    SELECT user_id, action_id, action, delta, score_after, id
    FROM score_events WHERE action_id IN ({})"""
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
CHANGE_KEYS = _sql(q.change_keys("changed_seq"))
CHANGES_OF = _sql(q.changes_of("changed_seq", "changed_seq IN (SELECT value FROM json_each(%s))"))


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


class SqliteStore(SqliteBoards):
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
                    await self._conn.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (busy, I/O error) can leave the transaction open: end it here.
                    await self._rollback()
                    raise
            except sqlite3.OperationalError as exc:
                raise ServiceUnavailable(f"database unavailable: {exc}") from exc

    async def _rollback(self) -> None:
        if self._conn.in_transaction:
            await self._conn.execute("ROLLBACK")

    async def _one(self, statement: str, params: tuple[Any, ...]) -> Any:
        async with self._conn.execute(_sql(statement), params) as cursor:
            return await cursor.fetchone()

    async def _next_seq(self) -> int:
        return int((await self._one(NEXT_SEQ, ()))[0])

    async def apply_increments(self, batch: Sequence[Increment], now: datetime | None = None,
                               watched: Collection[tuple[str, str]] = ()) -> list[Outcome]:
        # One BEGIN IMMEDIATE per batch; transactions are serialised, so every check here is exact.
        async with self._session(transaction=True):
            recorded = await self._recorded({inc.action_id for inc in batch})
            fresh = [inc for inc in batch if inc.action_id not in recorded]
            states = await self._user_states({inc.user_id for inc in fresh})
            planned = plan(batch, states, recorded)
            ids = await self._write(planned, states)
            applied = [planned.batch[index] for index, _ in planned.applied]
            pairs = await self._write_boards(list(zip(ids, applied, strict=True)), now or datetime.now(UTC), watched)
            keys = await self._select(CHANGE_KEYS_OF, sorted(planned.finals))
            return with_pairs(planned.results(ids, {row[0]: int(row[1]) for row in keys}), pairs)

    async def _user_states(self, user_ids: set[str]) -> dict[str, UserState]:
        """Every user's state, after creating the unknown ones at 0 (in sorted order, one seq each)."""
        found = await self._select(USER_STATES, sorted(user_ids))
        states = {row[0]: UserState(int(row[1]), bool(row[2]), row[3], int(row[4])) for row in found}
        unknown = sorted(user_ids - states.keys())
        if unknown:
            first = await self._take_seqs(len(unknown))
            await self._conn.executemany(INSERT_USER, [(u, None, first + i) for i, u in enumerate(unknown)])
            states.update({u: UserState(0, False, None) for u in unknown})
        return states

    async def _write(self, planned: Plan, states: dict[str, UserState]) -> list[int]:
        if not planned.applied:
            return []
        first = await self._take_seqs(len(planned.applied))
        ids = list(range(first, first + len(planned.applied)))
        await self._conn.executemany(_sql(q.INSERT_EVENT), zip(ids, *planned.columns(), strict=True))
        last = dict(zip(planned.columns()[1], ids, strict=True))  # each user's last event in the batch
        await self._conn.executemany(
            _sql(q.SET_SCORE), [(score, last[user], user) for user, score in planned.finals.items()])
        return ids

    async def _take_seqs(self, count: int) -> int:
        """Reserve `count` consecutive values of the one sequence; the first of them."""
        return int((await self._one(TAKE_SEQS, (count,)))[0]) - count + 1

    async def _select(self, template: str, values: list[str]) -> list[Any]:
        if not values:
            return []
        statement = template.format(", ".join("?" * len(values)))
        async with self._conn.execute(statement, values) as cursor:
            return list(await cursor.fetchall())

    async def _recorded(self, action_ids: Collection[str]) -> dict[str, IncrementResult]:
        rows = await self._select(RECORDED_MANY, sorted(action_ids))
        return {row[1]: q.recorded_result(row) for row in rows}

    async def recorded(self, action_ids: Collection[str]) -> dict[str, IncrementResult]:
        async with self._session():
            return await self._recorded(action_ids)

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

    async def change_keys(self, since: int, limit: int) -> list[int]:
        async with self._session():
            async with self._conn.execute(CHANGE_KEYS, (since, limit)) as cursor:
                return [int(row[0]) for row in await cursor.fetchall()]

    async def changes_of(self, keys: Sequence[int], after: tuple[int, str], limit: int) -> list[Change]:
        async with self._session():
            async with self._conn.execute(CHANGES_OF, (json.dumps(list(keys)), *after, limit)) as cursor:
                return [q.change(row) for row in await cursor.fetchall()]
