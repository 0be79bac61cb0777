"""Group commit in PostgreSQL in one statement: a batch is one round trip and one transaction.

The statement also answers replays: an actionId already recorded comes back as its record.

aiopg connections are autocommit, so one statement is its own transaction, committed when it
answers. Users are upserted with their batch totals (the row lock of the upsert serialises
concurrent batches per user, in user_id order, so no cycle), events inserted with ids reserved in
batch order (ties rank by who reached the score first) and each event's score after it derived
from the user's new total; it answers with the transaction's id, the change-feed key of the users'
rows it wrote. A deleted user's increments return no row (410). Two cases fail the
whole statement, and then nothing is written: an actionId another transaction committed meanwhile
(unique_violation: the caller replays it) and a score outside 64 bits (the caller falls back to
the step-by-step plan, which refuses only the overflowing increment).

The same statement adds the applied points to every (board, period key) pair that counts them,
with the keys computed from the boards it reads, at the `now` it is given (app.store.board_queries).
It returns the rows it left only of the pairs the caller says are watched (their read models take
them); of every other pair it changed, one row that names it (returning 8 rows per increment for
pairs nobody reads was a third of the cost of 3 boards × 3 periods).
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from app.domain import Increment, IncrementResult, PairScore
from app.errors import UserDeleted
from app.store import board_queries as bq
from app.store import queries as q
from app.store.batch import Outcome

AT_ONCE = """
    WITH given AS (
        SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[])
            WITH ORDINALITY AS r(a, u, act, d, c, n)),
    rec AS (
        SELECT user_id, action_id, action, delta, score_after, id FROM score_events
        WHERE action_id IN (SELECT a FROM given)),
    req AS (SELECT * FROM given WHERE a NOT IN (SELECT action_id FROM rec)),
    ids AS MATERIALIZED (SELECT n, nextval('score_seq') AS id FROM (SELECT n FROM req ORDER BY n) AS o),
    totals AS (SELECT u, sum(d) AS d, max(ids.id) AS last FROM req JOIN ids USING (n) GROUP BY u),
    up AS (
        INSERT INTO users (user_id, score, seq) SELECT u, d, last FROM totals ORDER BY u
        ON CONFLICT (user_id) DO UPDATE SET score = users.score + EXCLUDED.score, seq = EXCLUDED.seq
        WHERE users.deleted_at IS NULL
        RETURNING user_id, score, display_name, name_version),
    ev AS (
        INSERT INTO score_events (id, action_id, user_id, action, delta, score_after, caller)
        SELECT ids.id, req.a, req.u, req.act, req.d,
               up.score - COALESCE(sum(req.d) OVER (PARTITION BY req.u ORDER BY req.n DESC
                                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0),
               req.c
        FROM req JOIN ids USING (n) JOIN up ON up.user_id = req.u ORDER BY req.n
        RETURNING action_id, id, score_after, user_id),{pairs},
    board_rows AS ({board_upsert}),
    watched AS (SELECT * FROM unnest(%s::text[], %s::text[]) AS w(board_id, period_key))
    SELECT ev.action_id, ev.id, ev.score_after, up.display_name, NULL, NULL, NULL,
           up.name_version, pg_current_xact_id()::text::bigint
    FROM ev JOIN up USING (user_id)
    UNION ALL
    SELECT action_id, id, score_after, NULL, user_id, action, delta, NULL, NULL FROM rec
    UNION ALL
    SELECT board_id, seq, score, period_key, user_id, NULL, NULL, NULL, NULL FROM board_rows
    WHERE (board_id, period_key) IN (SELECT * FROM watched)
    UNION ALL
    SELECT board_id, NULL, NULL, period_key, NULL, NULL, NULL, NULL, NULL FROM (
        SELECT DISTINCT board_id, period_key FROM board_rows
        WHERE (board_id, period_key) NOT IN (SELECT * FROM watched)) AS held""".format(
    pairs=bq.PAIRS, board_upsert=bq.UPSERT_SCORES.format(
        source="(SELECT ids.id, req.u, req.act, req.d FROM req JOIN ids USING (n) JOIN up ON up.user_id = req.u) AS e"))


class Written(NamedTuple):
    """An applied event as the database wrote it."""

    seq: int
    score_after: int
    display_name: str | None
    name_version: int = 0
    change_key: int | None = None  # the transaction's id (the users' rows' change-feed key)


def read(rows: Sequence[Sequence[Any]]) -> tuple[dict[str, Written], dict[str, IncrementResult], list[PairScore]]:
    """The statement's rows: the events it wrote, the records of the replays it found, and the
    (board, period key) scores it left (a user but no delta) or held back (no seq)."""
    written, recorded, pairs = {}, {}, []
    for row in rows:
        if row[1] is None:
            pairs.append(PairScore(row[0], row[3], None))
        elif row[4] is None:
            written[row[0]] = Written(int(row[1]), int(row[2]), row[3], int(row[7]), int(row[8]))
        elif row[6] is None:
            pairs.append(bq.pair_score((row[0], row[3], row[4], row[2], row[1])))
        else:
            recorded[row[0]] = q.recorded_result((row[4], row[0], row[5], row[6], row[2], row[1]))
    return written, recorded, pairs


def work(batch: Sequence[Increment], recorded: Mapping[str, IncrementResult]) -> list[Increment] | None:
    """The increments to write: those not recorded before; None if an actionId repeats in the batch
    (its later uses depend on the first's outcome: the step-by-step plan decides those)."""
    fresh = [inc for inc in batch if inc.action_id not in recorded]
    return fresh if len({inc.action_id for inc in fresh}) == len(fresh) else None


def params(work: Sequence[Increment], now: datetime, watched: Collection[tuple[str, str]]) -> tuple[Any, ...]:
    return ([i.action_id for i in work], [i.user_id for i in work], [i.action for i in work],
            [i.delta for i in work], [i.caller for i in work], now,
            [board_id for board_id, _ in watched], [key for _, key in watched])


def outcomes(batch: Sequence[Increment], recorded: Mapping[str, IncrementResult],
             written: Mapping[str, Written]) -> list[Outcome]:
    """Each increment's outcome: recorded before, written now, or refused because its user was
    deleted (the statement wrote no row for it)."""
    results: list[Outcome] = []
    for inc in batch:
        row = written.get(inc.action_id)
        if inc.action_id in recorded:
            results.append(recorded[inc.action_id])
        elif row is not None:
            results.append(IncrementResult(
                user_id=inc.user_id, action_id=inc.action_id, action=inc.action, delta=inc.delta,
                new_score=row.score_after, applied=True, seq=row.seq, display_name=row.display_name,
                name_version=row.name_version, change_key=row.change_key))
        else:
            results.append(UserDeleted(f"user {inc.user_id!r} was deleted"))
    return results
