"""PostgreSQL store through an aiopg pool; aiopg stays inside this module.

aiopg connections are autocommit, so every write runs inside an explicit `cur.begin()`.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiopg
import psycopg2

from app.domain import AuditEvent, Change, Entry, Increment, IncrementResult, Standing
from app.errors import ServiceUnavailable, UserDeleted
from app.store import queries as q

# Errors that mean "the database is not there", as opposed to a bug in a query.
UNREACHABLE = (psycopg2.OperationalError, psycopg2.InterfaceError, asyncio.TimeoutError, OSError)
CREATE_USER = "INSERT INTO users (user_id) VALUES (%s) ON CONFLICT (user_id) DO NOTHING"
CLAIM_ACTION = """
    INSERT INTO score_events (action_id, user_id, action, delta, score_after, caller)
    VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (action_id) DO NOTHING RETURNING id"""
SAVE_USER = f"""
    INSERT INTO users (user_id, display_name) VALUES (%s, %s)
    ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name
    WHERE users.deleted_at IS NULL
    RETURNING {q.ENTRY_COLUMNS}"""

# Inserts (or re-raises a cleared) flag only when the window's points exceed the ceiling;
# RETURNING gives a row only to the call that raised it.
FLAG_IF_OVER = """
    INSERT INTO user_flags (user_id, points)
    SELECT %s, gained FROM (
        SELECT COALESCE(sum(delta), 0) AS gained FROM score_events
        WHERE user_id = %s AND delta > 0 AND created_at > now() - make_interval(secs => %s)
          AND created_at > COALESCE((SELECT cleared_at FROM user_flags WHERE user_id = %s), '-infinity')
    ) AS recent WHERE gained > %s
    ON CONFLICT (user_id) DO UPDATE SET points = EXCLUDED.points, flagged_at = now(), cleared_at = NULL
    WHERE user_flags.cleared_at IS NOT NULL
    RETURNING points"""
CLEAR_FLAG = "UPDATE user_flags SET cleared_at = now() WHERE user_id = %s AND cleared_at IS NULL"
# Every transaction below the oldest one still running has ended: its changes are visible.
HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
CHANGES = q.changes("changed_xid")


class _AlreadyRecorded(Exception):
    """A concurrent request committed this actionId first: roll back and replay."""


@asynccontextmanager
async def _reachable() -> AsyncIterator[None]:
    try:
        yield
    except UNREACHABLE as exc:
        raise ServiceUnavailable(f"database unreachable: {type(exc).__name__}") from exc


def _dsn(url: str) -> tuple[str, str]:
    """Split our URL into a libpq DSN and the schema named by `?schema=` (default public)."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    schema = params.pop("schema", "public")
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(params))), schema


@asynccontextmanager
async def open_postgres(url: str, query_timeout: float) -> AsyncIterator[PostgresStore]:
    dsn, schema = _dsn(url)
    # minsize=0: the process starts (and /readyz explains) even while the database is down.
    pool = await aiopg.create_pool(
        dsn, minsize=0, maxsize=10, timeout=query_timeout, options=f"-c search_path={schema}",
        enable_json=False, enable_hstore=False, enable_uuid=False,
    )
    try:
        yield PostgresStore(pool)
    finally:
        pool.close()
        await pool.wait_closed()


class PostgresStore:
    def __init__(self, pool: aiopg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _cursor(self, transaction: bool = False) -> AsyncIterator[Any]:
        async with _reachable(), self._pool.acquire() as conn, conn.cursor() as cur:
            if transaction:
                async with cur.begin():
                    yield cur
            else:
                yield cur

    async def apply_increment(self, increment: Increment) -> IncrementResult:
        try:
            async with self._cursor(transaction=True) as cur:
                return await self._apply(cur, increment)
        except _AlreadyRecorded:
            recorded = await self.recorded(increment.action_id)
            assert recorded is not None, "a conflicting actionId is committed"
            return recorded
        except UserDeleted:  # a replay of what was applied before the deletion is still answered
            if (recorded := await self.recorded(increment.action_id)) is not None:
                return recorded
            raise

    async def _apply(self, cur: Any, inc: Increment) -> IncrementResult:
        await cur.execute(CREATE_USER, (inc.user_id,))
        # The row lock serialises increments per user, so seq grows with commit order.
        await cur.execute(q.USER_STATE + " FOR UPDATE", (inc.user_id,))
        score, deleted, display_name = await cur.fetchone()
        if deleted:
            raise UserDeleted(f"user {inc.user_id!r} was deleted")
        new_score = q.checked_score(score + inc.delta)
        await cur.execute(
            CLAIM_ACTION, (inc.action_id, inc.user_id, inc.action, inc.delta, new_score, inc.caller)
        )
        claimed = await cur.fetchone()
        if claimed is None:
            raise _AlreadyRecorded
        await cur.execute(q.SET_SCORE, (new_score, claimed[0], inc.user_id))
        return IncrementResult(
            user_id=inc.user_id, action_id=inc.action_id, action=inc.action, delta=inc.delta,
            new_score=new_score, applied=True, seq=claimed[0], display_name=display_name,
        )

    async def recorded(self, action_id: str) -> IncrementResult | None:
        async with self._cursor() as cur:
            await cur.execute(q.RECORDED, (action_id,))
            row = await cur.fetchone()
        return None if row is None else q.recorded_result(row)

    async def save_user(self, user_id: str, display_name: str) -> Entry:
        async with self._cursor(transaction=True) as cur:
            await cur.execute(SAVE_USER, (user_id, display_name))
            row = await cur.fetchone()
        if row is None:
            raise UserDeleted(f"user {user_id!r} was deleted")
        return q.entry(row)

    async def delete_user(self, user_id: str) -> bool:
        async with self._cursor(transaction=True) as cur:
            await cur.execute(q.DELETE_USER, (user_id,))
            return bool(cur.rowcount)

    async def ranked(self, offset: int, limit: int) -> list[Entry]:
        async with self._cursor() as cur:
            await cur.execute(q.RANKED, (limit, offset))
            return [q.entry(row) for row in await cur.fetchall()]

    async def standing(self, user_id: str, around: int) -> Standing | None:
        async with self._cursor() as cur:
            await cur.execute(q.LIVE_USER, (user_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            entry = q.entry(row)
            await cur.execute(q.AHEAD, (entry.score, entry.score, entry.seq))
            rank = 1 + (await cur.fetchone())[0]
        window = await self.ranked(*q.around_window(rank, around)) if around else []
        return Standing(entry=entry, rank=rank, around=tuple(window))

    async def ping(self) -> None:
        async with self._cursor() as cur:
            await cur.execute("SELECT 1")

    async def events(self, user_id: str, before: int | None, limit: int) -> list[AuditEvent] | None:
        async with self._cursor() as cur:
            await cur.execute(q.EVENTS, (user_id, q.INT64_MAX if before is None else before, limit))
            rows = await cur.fetchall()
            if not rows:
                await cur.execute(q.KNOWN_USER, (user_id,))
                if await cur.fetchone() is None:
                    return None
        return [q.audit_event(row) for row in rows]

    async def flag_if_over(self, user_id: str, ceiling: int, window_seconds: int) -> int | None:
        async with self._cursor(transaction=True) as cur:
            await cur.execute(FLAG_IF_OVER, (user_id, user_id, window_seconds, user_id, ceiling))
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def flagged(self, user_id: str) -> bool:
        async with self._cursor() as cur:
            await cur.execute(q.FLAGGED, (user_id,))
            return await cur.fetchone() is not None

    async def clear_flag(self, user_id: str) -> bool:
        async with self._cursor(transaction=True) as cur:
            await cur.execute(CLEAR_FLAG, (user_id,))
            return bool(cur.rowcount)

    # The change feed (ChangeFeed): keys are the ids of the transactions that changed each row.

    async def change_horizon(self) -> int:
        async with self._cursor() as cur:
            await cur.execute(HORIZON)
            return int((await cur.fetchone())[0])

    async def changes(self, since: int, after: tuple[int, str], limit: int) -> list[Change]:
        async with self._cursor() as cur:
            await cur.execute(CHANGES, (since, *after, limit))
            return [q.change(row) for row in await cur.fetchall()]
