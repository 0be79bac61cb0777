"""Group commit in PostgreSQL: one transaction per batch, one set-based statement per step.

Round trips per batch: lock (BEGIN, create users, lock them, reserve event ids), then write
(events, scores and COMMIT).
The cursor comes from app.store.postgres, which owns the driver.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from app.domain import Increment, IncrementResult
from app.store import board_queries as bq
from app.store.batch import Plan, UserState, plan

# Users are created and locked in user_id order, so two batches never wait on each other in a cycle.
# The same round trip reserves one event id per increment from the one sequence, in batch order,
# so ties rank by who reached the score first. The transaction's id is the change-feed key its
# writes give the users' rows (the trigger of sql/postgres/0003_changes.sql writes the same value).
LOCK_USERS = """
    BEGIN;
    INSERT INTO users (user_id) SELECT u FROM unnest(%s::text[]) AS u ORDER BY u
    ON CONFLICT (user_id) DO NOTHING;
    SELECT user_id, score, deleted_at IS NOT NULL, display_name, name_version,
           (SELECT array_agg(nextval('score_seq') ORDER BY g) FROM generate_series(1, %s) AS g),
           pg_current_xact_id()::text::bigint
    FROM users WHERE user_id = ANY(%s::text[]) ORDER BY user_id FOR UPDATE"""
# Events and scores, then COMMIT, in one round trip. An actionId that another transaction committed
# meanwhile fails the INSERT (unique_violation) before COMMIT runs: the caller rolls back and
# replays it. A user's seq becomes the id of their last event in the batch. The events' points
# go to every (board, period key) pair that counts them, keys computed at the given `now`.
WRITE = """
    INSERT INTO score_events (id, action_id, user_id, action, delta, score_after, caller)
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[]);
    UPDATE users SET score = f.score, seq = f.seq
    FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS f(u, score, seq) WHERE users.user_id = f.u;
""" + bq.WRITE_SCORES + """
    COMMIT"""
RECORDED = """
    SELECT user_id, action_id, action, delta, score_after, id
    FROM score_events WHERE action_id = ANY(%s::text[])"""
# Which of a batch's events exist (id, score after, the user's name): asked after a COMMIT whose
# answer was lost.
COMMITTED = """
    SELECT e.action_id, e.id, e.score_after, u.display_name
    FROM score_events AS e JOIN users AS u USING (user_id) WHERE e.action_id = ANY(%s::text[])"""


class Raced(Exception):
    """Another transaction committed some of these actionIds first: roll back, replay them."""

    def __init__(self, action_ids: list[str]) -> None:
        super().__init__(f"{len(action_ids)} actionIds committed concurrently")
        self.action_ids = action_ids


class Locked(NamedTuple):
    """A planned batch inside its open transaction: the event ids reserved, the transaction's id."""

    plan: Plan
    ids: list[int]
    change_key: int


async def lock_and_plan(cur: Any, batch: Sequence[Increment], recorded: dict[str, IncrementResult]) -> Locked:
    """BEGIN, create unknown users at 0, lock every user of the batch, reserve event ids, plan."""
    users = sorted({inc.user_id for inc in batch if inc.action_id not in recorded})
    await cur.execute(LOCK_USERS, (users, len(batch), users))
    rows = await cur.fetchall()
    states = {row[0]: UserState(int(row[1]), row[2], row[3], int(row[4])) for row in rows}
    if not rows:
        return Locked(plan(batch, states, recorded), [], 0)
    return Locked(plan(batch, states, recorded), [int(seq) for seq in rows[0][5]], int(rows[0][6]))


def write_params(planned: Plan, ids: list[int], now: datetime) -> tuple[Any, ...]:
    """WRITE's arrays: the applied events with their ids, then each user's final score and seq,
    then the board write's `now` and events (id, user, action, delta)."""
    columns = planned.columns()
    last = dict(zip(columns[1], ids, strict=True))  # user -> id of their last event
    finals = list(planned.finals.items())
    return (ids, *columns, [u for u, _ in finals], [s for _, s in finals], [last[u] for u, _ in finals],
            now, ids, columns[1], columns[2], columns[3])
