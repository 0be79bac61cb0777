"""SQL of boards and their (board, period key) scores, with %s placeholders (SQLite swaps them for ?).

PostgreSQL computes the period keys inside the write statement, from the boards it reads in the
same transaction and the `now` Python passes in: a board change applies to the increments
committed after it, in every process, and an injected clock decides the period.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from app.boards import BoardConfig
from app.domain import Entry, PairScore

BOARDS = "SELECT board_id, title, actions, periods, time_zone FROM boards ORDER BY board_id"
DELETE_SCORES = "DELETE FROM board_scores WHERE board_id = %s"
DELETE_BOARD = "DELETE FROM boards WHERE board_id = %s"
_ENTRY = """
    SELECT s.user_id, u.display_name, s.score, s.seq, u.name_version
    FROM board_scores AS s JOIN users AS u ON u.user_id = s.user_id
    WHERE s.board_id = %s AND s.period_key = %s AND u.deleted_at IS NULL"""
# The index board_scores_rank serves both: the rank order of one (board, period key).
BOARD_RANKED = _ENTRY + " ORDER BY s.score DESC, s.seq ASC LIMIT %s OFFSET %s"
BOARD_USER = _ENTRY + " AND s.user_id = %s"
# Some users' rows of one (board, period key): the user ids as an array, or a JSON array in SQLite.
POSTGRES_BOARD_USERS = _ENTRY + " AND s.user_id = ANY (%s)"
SQLITE_BOARD_USERS = _ENTRY + " AND s.user_id IN (SELECT value FROM json_each(%s))"
BOARD_AHEAD = """
    SELECT count(*) FROM board_scores AS s JOIN users AS u ON u.user_id = s.user_id
    WHERE s.board_id = %s AND s.period_key = %s AND u.deleted_at IS NULL
      AND (s.score > %s OR (s.score = %s AND s.seq < %s))"""

# PostgreSQL: every stored (board, period key) pair at the statement's `now`, as CTEs to put
# after WITH. main's `all` period is the users table, so it is not a pair here.
PAIRS = """
    clock AS (SELECT %s::timestamptz AS now),
    pairs AS MATERIALIZED (
        SELECT b.board_id, b.actions, CASE p.period
                WHEN 'daily' THEN to_char(timezone(b.time_zone, clock.now), 'YYYY-MM-DD')
                WHEN 'weekly' THEN to_char(timezone(b.time_zone, clock.now), 'IYYY-"W"IW')
                WHEN 'monthly' THEN to_char(timezone(b.time_zone, clock.now), 'YYYY-MM')
                ELSE 'all' END AS period_key
        FROM boards AS b CROSS JOIN unnest(b.periods) AS p(period) CROSS JOIN clock
        WHERE b.board_id <> 'main' OR p.period <> 'all')"""
# Adds each user's points of a set of applied events (`source`: id, u, act, d) to every pair
# that counts the event's action. Rows are locked in key order (their user's row is already
# locked), so concurrent batches never wait on each other in a cycle.
UPSERT_SCORES = """
    INSERT INTO board_scores (board_id, period_key, user_id, score, seq)
    SELECT pairs.board_id, pairs.period_key, e.u, sum(e.d), max(e.id)
    FROM {source} JOIN pairs ON pairs.actions IS NULL OR e.act = ANY (pairs.actions)
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (board_id, period_key, user_id) DO UPDATE
    SET score = board_scores.score + EXCLUDED.score, seq = EXCLUDED.seq
    RETURNING board_id, period_key, user_id, score, seq"""
# The step-by-step plan's board write: the applied events as arrays.
WRITE_SCORES = "WITH" + PAIRS + UPSERT_SCORES.format(
    source="unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[]) AS e(id, u, act, d)") + ";"

# SQLite: the upsert of a batch's (board, period key, user, points, seq) rows, given as one JSON
# array, in one statement that returns the rows it left; unqualified columns are the stored row's.
# (`WHERE true` keeps the parser from reading ON CONFLICT as a join's ON.)
SQLITE_UPSERT = """
    INSERT INTO board_scores (board_id, period_key, user_id, score, seq)
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
           json_extract(value, '$[3]'), json_extract(value, '$[4]')
    FROM json_each(?) WHERE true
    ON CONFLICT (board_id, period_key, user_id) DO UPDATE SET score = score + excluded.score, seq = excluded.seq
    RETURNING board_id, period_key, user_id, score, seq"""
SQLITE_SAVE = """
    INSERT INTO boards (board_id, title, actions, periods, time_zone) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (board_id) DO UPDATE SET title = excluded.title, actions = excluded.actions,
        periods = excluded.periods, time_zone = excluded.time_zone,
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"""
POSTGRES_SAVE = """
    INSERT INTO boards (board_id, title, actions, periods, time_zone) VALUES (%s, %s, %s::text[], %s::text[], %s)
    ON CONFLICT (board_id) DO UPDATE SET title = EXCLUDED.title, actions = EXCLUDED.actions,
        periods = EXCLUDED.periods, time_zone = EXCLUDED.time_zone, updated_at = now()"""


def board(row: Sequence[Any]) -> BoardConfig:
    """A BOARDS row; SQLite keeps the lists as JSON text, PostgreSQL as arrays."""
    actions, periods = (json.loads(v) if isinstance(v, str) else v for v in (row[2], row[3]))
    return BoardConfig(row[0], row[1], None if actions is None else tuple(actions), tuple(periods), row[4])


def pair_score(row: Sequence[Any]) -> PairScore:
    """A (board, period key, user, score, seq) row."""
    return PairScore(row[0], row[1], Entry(row[2], None, int(row[3]), int(row[4])))


def watched_only(rows: Sequence[PairScore], watched: Collection[tuple[str, str]]) -> list[PairScore]:
    """The rows of the watched pairs, and each other pair once, held back (without an entry)."""
    kept = [row for row in rows if (row.board_id, row.key) in watched]
    held = dict.fromkeys((row.board_id, row.key) for row in rows if (row.board_id, row.key) not in watched)
    return kept + [PairScore(board_id, key, None) for board_id, key in held]
