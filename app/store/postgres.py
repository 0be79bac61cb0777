"""PostgreSQL store through an aiopg pool; aiopg stays inside this module.

aiopg connections are autocommit, so every write runs inside an explicit `cur.begin()`.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiopg
import psycopg2
import psycopg2.errors

from app.domain import AuditEvent, Change, Entry, Increment, IncrementResult, Standing
from app.errors import OutcomeUnknown, ServiceUnavailable, UserDeleted
from app.store import postgres_batch as pb
from app.store import postgres_once as once
from app.store import queries as q
from app.store.batch import Outcome, Plan, with_pairs
from app.store.postgres_boards import PostgresBoards

# Errors that mean "the database is not there", as opposed to a bug in a query.
UNREACHABLE = (psycopg2.OperationalError, psycopg2.InterfaceError, asyncio.TimeoutError, OSError)
RETRYABLE = (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure)
RETRIES = 3
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
CHANGE_KEYS = q.change_keys("changed_xid")
CHANGES_OF = q.changes_of("changed_xid", "changed_xid = ANY(%s::bigint[])")


async def _rollback(conn: Any, cur: Any) -> None:
    """Never hand a connection back to the pool inside a transaction: roll back, or drop it."""
    try:
        await cur.execute("ROLLBACK")
    except (*UNREACHABLE, psycopg2.Error):
        conn.close()


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
        yield PostgresStore(pool, query_timeout)
    finally:
        pool.close()
        await pool.wait_closed()


class PostgresStore(PostgresBoards):
    def __init__(self, pool: aiopg.Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout

    @asynccontextmanager
    async def _cursor(self, transaction: bool = False) -> AsyncIterator[Any]:
        async with _reachable(), self._pool.acquire() as conn, conn.cursor() as cur:
            if transaction:
                async with cur.begin():
                    yield cur
            else:
                yield cur

    async def apply_increments(self, batch: Sequence[Increment], now: datetime | None = None,
                               watched: Collection[tuple[str, str]] = ()) -> list[Outcome]:
        recorded: dict[str, IncrementResult] = {}
        at_once, now = True, now or datetime.now(UTC)
        for _ in range(RETRIES):
            try:
                work = once.work(batch, recorded) if at_once else None
                if work is not None:
                    return await self._at_once(batch, recorded, work, now, watched)
                return await self._group_commit(batch, recorded, now)
            except psycopg2.errors.NumericValueOutOfRange:
                at_once = False  # a score would leave 64 bits: the plan refuses only that increment
            except pb.Raced as raced:  # rare: a duplicate committed by another process meanwhile
                recorded.update(await self.recorded(raced.action_ids))
            except RETRYABLE:
                pass  # a deadlock or serialization failure rolled the whole batch back
        raise ServiceUnavailable("the batch kept conflicting with concurrent writers; nothing was written")

    async def _at_once(self, batch: Sequence[Increment], recorded: dict[str, IncrementResult],
                       work: list[Increment], now: datetime, watched: Collection[tuple[str, str]]) -> list[Outcome]:
        """The batch in one statement, so one round trip and one transaction (see postgres_once)."""
        action_ids = [inc.action_id for inc in work]
        async with _reachable(), self._pool.acquire() as conn, conn.cursor() as cur:
            try:
                await cur.execute(once.AT_ONCE, once.params(work, now, watched))
                written, replays, pairs = once.read(await cur.fetchall())
            except psycopg2.errors.UniqueViolation:
                raise pb.Raced(action_ids) from None
            except UNREACHABLE as exc:  # it may have committed with its answer lost: ask before answering
                found = await self._ask_until(action_ids, exc)
                if len(found) < len(action_ids):  # one statement: all of it, or none of it, was ours
                    raise ServiceUnavailable(
                        f"database connection lost before the batch took effect: {type(exc).__name__}") from exc
                # the change key stays unknown: the read model's repair reads these users' rows
                written, replays = {a: once.Written(*found[a][:3]) for a in action_ids}, {}
                pairs = None  # the board rows it wrote are unknown: their read models are rebuilt
        return with_pairs(once.outcomes(batch, {**recorded, **replays}, written), pairs)

    async def _group_commit(self, batch: Sequence[Increment], recorded: dict[str, IncrementResult],
                            now: datetime) -> list[Outcome]:
        async with _reachable(), self._pool.acquire() as conn, conn.cursor() as cur:
            try:
                planned, seqs, key = await pb.lock_and_plan(cur, batch, recorded)
                if not planned.applied:  # every increment refused: nothing to write
                    await cur.execute("ROLLBACK")
                    return planned.results([])
            except BaseException:
                await _rollback(conn, cur)
                raise
            ids = seqs[: len(planned.applied)]
            await self._write(conn, cur, pb.write_params(planned, ids, now), planned, ids)
        # This rare path (an actionId twice in the batch, a 64-bit overflow) does not return the
        # board rows it wrote: the pairs' read models are rebuilt from the database instead.
        return with_pairs(planned.results(ids, dict.fromkeys(planned.finals, key)), None)

    async def _write(self, conn: Any, cur: Any, params: tuple[Any, ...], planned: Plan, ids: list[int]) -> None:
        try:
            await cur.execute(pb.WRITE, params)
        except psycopg2.errors.UniqueViolation:  # a duplicate committed by another process meanwhile
            await _rollback(conn, cur)
            raise pb.Raced(planned.columns()[0]) from None
        except UNREACHABLE as exc:
            # The COMMIT may have been applied with its answer lost: ask before answering.
            await self._committed(planned.columns()[0], ids, exc)
        except BaseException:
            await _rollback(conn, cur)
            raise

    async def _committed(self, action_ids: list[str], ids: list[int], lost: BaseException) -> None:
        """Return if the batch's events are in the database, raise ServiceUnavailable if none is,
        OutcomeUnknown if the database cannot be asked within the timeout."""
        found = {action_id: row[0] for action_id, row in (await self._ask_until(action_ids, lost)).items()}
        if found == dict(zip(action_ids, ids, strict=True)):
            return
        if all(found.get(action_id) != seq for action_id, seq in zip(action_ids, ids, strict=True)):
            raise ServiceUnavailable(f"database connection lost before COMMIT took effect: {type(lost).__name__}")
        raise OutcomeUnknown("the database answered inconsistently about a lost COMMIT")

    async def _ask_until(self, action_ids: list[str], lost: BaseException) -> dict[str, tuple[int, int, str | None]]:
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self._timeout, 0.05
        while True:
            try:
                async with self._pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute(pb.COMMITTED, (action_ids,))
                    return {row[0]: (int(row[1]), int(row[2]), row[3]) for row in await cur.fetchall()}
            except UNREACHABLE:
                if loop.time() + delay > deadline:
                    raise OutcomeUnknown(
                        "the connection was lost during COMMIT and the database has not answered since; "
                        "retrying with the same actionId is safe") from lost
            await asyncio.sleep(delay)  # bounded by the deadline: the database may be restarting
            delay = min(delay * 2, 1.0)

    async def recorded(self, action_ids: Collection[str]) -> dict[str, IncrementResult]:
        if not action_ids:
            return {}
        async with self._cursor() as cur:
            await cur.execute(pb.RECORDED, (list(action_ids),))
            rows = await cur.fetchall()
        return {row[1]: q.recorded_result(row) for row in rows}

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

    async def change_keys(self, since: int, limit: int) -> list[int]:
        async with self._cursor() as cur:
            await cur.execute(CHANGE_KEYS, (since, limit))
            return [int(row[0]) for row in await cur.fetchall()]

    async def changes_of(self, keys: Sequence[int], after: tuple[int, str], limit: int) -> list[Change]:
        async with self._cursor() as cur:
            await cur.execute(CHANGES_OF, (list(keys), *after, limit))
            return [q.change(row) for row in await cur.fetchall()]
