"""SQL shared by both dialects, written with %s placeholders (SQLite's store swaps them for ?)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from app.domain import AuditEvent, Change, Entry, IncrementResult
from app.errors import ValidationFailed

ENTRY_COLUMNS = "user_id, display_name, score, seq, name_version"
RANKED = f"""
    SELECT {ENTRY_COLUMNS} FROM users WHERE deleted_at IS NULL
    ORDER BY score DESC, seq ASC LIMIT %s OFFSET %s"""
LIVE_USER = f"SELECT {ENTRY_COLUMNS} FROM users WHERE user_id = %s AND deleted_at IS NULL"
# Users ahead of (score, seq): the rank is one more. The partial index users_rank serves it.
AHEAD = """
    SELECT count(*) FROM users
    WHERE deleted_at IS NULL AND (score > %s OR (score = %s AND seq < %s))"""
RECORDED = """
    SELECT user_id, action_id, action, delta, score_after, id
    FROM score_events WHERE action_id = %s"""
USER_STATE = "SELECT score, deleted_at IS NOT NULL, display_name FROM users WHERE user_id = %s"
INSERT_EVENT = """
    INSERT INTO score_events (id, action_id, user_id, action, delta, score_after, caller)
    VALUES (%s, %s, %s, %s, %s, %s, %s)"""
SET_SCORE = "UPDATE users SET score = %s, seq = %s WHERE user_id = %s"
RENAME = "UPDATE users SET display_name = %s WHERE user_id = %s AND deleted_at IS NULL"
DELETE_USER = "UPDATE users SET display_name = NULL, deleted_at = CURRENT_TIMESTAMP WHERE user_id = %s"
KNOWN_USER = "SELECT deleted_at IS NOT NULL FROM users WHERE user_id = %s"
# Newest first; the index score_events_user (user_id, id DESC) serves it.
EVENTS = """
    SELECT id, action_id, action, delta, score_after, caller, created_at FROM score_events
    WHERE user_id = %s AND id < %s ORDER BY id DESC LIMIT %s"""
FLAGGED = "SELECT 1 FROM user_flags WHERE user_id = %s AND cleared_at IS NULL"


def changes(key_column: str) -> str:
    """Keyset page of the change feed from a horizon, after the last (key, user) read; the
    index users_changes serves it (never OFFSET: each page costs the same)."""
    return f"""
    SELECT {ENTRY_COLUMNS}, deleted_at IS NOT NULL, {key_column} FROM users
    WHERE {key_column} >= %s AND ({key_column}, user_id) > (%s, %s)
    ORDER BY {key_column}, user_id LIMIT %s"""

def change_keys(key_column: str) -> str:
    """The distinct keys from `since` on, ascending: an index-only scan of users_changes."""
    return f"""
    SELECT DISTINCT {key_column} FROM users WHERE {key_column} >= %s ORDER BY {key_column} LIMIT %s"""


def changes_of(key_column: str, among: str) -> str:
    """Keyset page of the rows whose key is among the given ones (`among`: the dialect's test
    of the key against one array parameter), after the last (key, user) read."""
    return f"""
    SELECT {ENTRY_COLUMNS}, deleted_at IS NOT NULL, {key_column} FROM users
    WHERE {among} AND ({key_column}, user_id) > (%s, %s)
    ORDER BY {key_column}, user_id LIMIT %s"""


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def entry(row: Sequence[Any]) -> Entry:
    version = int(row[4]) if len(row) > 4 else 0
    return Entry(user_id=row[0], display_name=row[1], score=int(row[2]), seq=int(row[3]), name_version=version)


def change(row: Sequence[Any]) -> Change:
    """A CHANGES row: the entry's columns, then deleted, then the feed key."""
    return Change(key=int(row[6]), entry=entry(row[:5]), deleted=bool(row[5]))


def recorded_result(row: Sequence[Any]) -> IncrementResult:
    return IncrementResult(
        user_id=row[0], action_id=row[1], action=row[2], delta=int(row[3]),
        new_score=int(row[4]), applied=False, seq=int(row[5]),
    )


def audit_event(row: Sequence[Any]) -> AuditEvent:
    # PostgreSQL returns an aware datetime; SQLite the ISO text its default wrote.
    at = row[6] if isinstance(row[6], datetime) else datetime.fromisoformat(row[6])
    return AuditEvent(
        id=int(row[0]), action_id=row[1], action=row[2], delta=int(row[3]),
        score_after=int(row[4]), caller=row[5], at=at.astimezone(UTC),
    )


def around_window(rank: int, around: int) -> tuple[int, int]:
    """(offset, limit) of the entries from rank-around to rank+around, clipped at rank 1."""
    first = max(rank - around, 1)
    return first - 1, rank + around - first + 1


def checked_score(score: int) -> int:
    """Scores are signed 64-bit in both databases and in the read model."""
    if not INT64_MIN <= score <= INT64_MAX:
        raise ValidationFailed("the increment would take the score out of the 64-bit range",
                               {"action": ["score out of range"]})
    return score
