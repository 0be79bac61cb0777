"""Group commit in PostgreSQL: one transaction per batch, one set-based statement per step.

Round trips per batch: lock (BEGIN + create users + lock them), write (events + scores), COMMIT.
The cursor comes from app.store.postgres, which owns the driver.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain import Increment, IncrementResult
from app.store.batch import Plan, UserState, plan

# Users are created and locked in user_id order, so two batches never wait on each other in a cycle.
LOCK_USERS = """
    BEGIN;
    INSERT INTO users (user_id) SELECT u FROM unnest(%s::text[]) AS u ORDER BY u
    ON CONFLICT (user_id) DO NOTHING;
    SELECT user_id, score, deleted_at IS NOT NULL, display_name FROM users
    WHERE user_id = ANY(%s::text[]) ORDER BY user_id FOR UPDATE"""
# Events take ids from the one sequence in batch order, so ties rank by who reached the score first;
# a user's seq becomes the id of their last event in the batch. An actionId another transaction
# committed meanwhile is skipped (ON CONFLICT), which the caller sees as a missing id and retries.
WRITE = """
    WITH ev AS (
        INSERT INTO score_events (id, action_id, user_id, action, delta, score_after, caller)
        SELECT nextval('score_seq'), a, u, act, d, s, c FROM (
            SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[])
                WITH ORDINALITY AS t(a, u, act, d, s, c, n)
            ORDER BY n) AS ordered
        ON CONFLICT (action_id) DO NOTHING
        RETURNING id, action_id, user_id),
    last AS (SELECT DISTINCT ON (user_id) user_id, id FROM ev ORDER BY user_id, id DESC),
    up AS (
        UPDATE users SET score = f.score, seq = last.id
        FROM last JOIN unnest(%s::text[], %s::bigint[]) AS f(u, score) ON f.u = last.user_id
        WHERE users.user_id = last.user_id)
    SELECT action_id, id FROM ev"""
RECORDED = """
    SELECT user_id, action_id, action, delta, score_after, id
    FROM score_events WHERE action_id = ANY(%s::text[])"""
# Which of a batch's events exist: asked after a COMMIT whose answer was lost.
COMMITTED = "SELECT action_id, id FROM score_events WHERE action_id = ANY(%s::text[])"


class Raced(Exception):
    """Another transaction committed some of these actionIds first: roll back, replay them."""

    def __init__(self, action_ids: list[str]) -> None:
        super().__init__(f"{len(action_ids)} actionIds committed concurrently")
        self.action_ids = action_ids


async def lock_and_plan(cur: Any, batch: Sequence[Increment], recorded: dict[str, IncrementResult]) -> Plan:
    """BEGIN, create unknown users at 0, lock every user of the batch, and plan the batch."""
    users = sorted({inc.user_id for inc in batch if inc.action_id not in recorded})
    await cur.execute(LOCK_USERS, (users, users))
    states = {row[0]: UserState(int(row[1]), row[2], row[3]) for row in await cur.fetchall()}
    return plan(batch, states, recorded)


async def write(cur: Any, planned: Plan) -> list[int]:
    """Insert the applied events and set the scores; the events' ids in plan order."""
    if not planned.applied:
        return []
    action_ids, *rest = planned.columns()
    finals = list(planned.finals.items())
    await cur.execute(WRITE, (action_ids, *rest, [u for u, _ in finals], [s for _, s in finals]))
    ids = {row[0]: int(row[1]) for row in await cur.fetchall()}
    missing = [action_id for action_id in action_ids if action_id not in ids]
    if missing:
        raise Raced(missing)
    return [ids[action_id] for action_id in action_ids]
