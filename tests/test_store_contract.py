"""The Store protocol on both dialects: increments, replays, users, ranks and windows.

The API reads go to the read model, so this suite is what checks the database's own
`ranked` and `standing`: the fallback every read takes when Redis is away.
"""
from __future__ import annotations

import uuid

import pytest

from app.domain import Entry, Increment, IncrementResult
from app.errors import AppError, UserDeleted
from app.store import Database


async def _apply(store: Database, user_id: str, action_id: str, delta: int = 10) -> IncrementResult:
    """One increment through the batch interface; its refusal raised as the error it is."""
    [outcome] = await store.apply_increments([Increment(user_id, action_id, "complete", delta, "game-1")])
    if isinstance(outcome, AppError):
        raise outcome
    return outcome


async def _score(store: Database, user_id: str, delta: int, action_id: str | None = None) -> int:
    return (await _apply(store, user_id, action_id or uuid.uuid4().hex, delta)).seq


def _ranking(entries: list[Entry]) -> list[tuple[str, int]]:
    return [(entry.user_id, entry.score) for entry in entries]


async def test_an_increment_is_applied_once_and_recorded(database: Database) -> None:
    first = await _apply(database, "u1", "a1")
    assert (first.new_score, first.applied, first.delta) == (10, True, 10)
    again = await _apply(database, "u1", "a1")
    assert (again.new_score, again.applied, again.seq) == (10, False, first.seq)
    recorded = await database.recorded(["a1", "never"])
    assert list(recorded) == ["a1"]
    assert (recorded["a1"].user_id, recorded["a1"].new_score, recorded["a1"].applied) == ("u1", 10, False)
    standing = await database.standing("u1", 0)
    assert standing is not None and standing.entry.score == 10


async def test_ranked_orders_by_score_then_who_reached_it_first(database: Database) -> None:
    await _score(database, "late", 20)
    await _score(database, "early", 10)
    await _score(database, "early", 10)  # reaches 20 after "late": ranks below it
    await _score(database, "top", 30)
    await _score(database, "low", 5)
    assert _ranking(await database.ranked(0, 10)) == [("top", 30), ("late", 20), ("early", 20), ("low", 5)]
    assert _ranking(await database.ranked(1, 2)) == [("late", 20), ("early", 20)]
    assert await database.ranked(4, 10) == []


async def test_standing_gives_the_rank_and_the_window_around_it(database: Database) -> None:
    for index in range(7):  # u0 has 70 ... u6 has 10: ranks 1..7
        await _score(database, f"u{index}", 70 - 10 * index)
    standing = await database.standing("u3", 2)
    assert standing is not None
    assert (standing.rank, standing.entry.user_id, standing.entry.score) == (4, "u3", 40)
    assert [entry.user_id for entry in standing.around] == ["u1", "u2", "u3", "u4", "u5"]
    clipped_at_top = await database.standing("u1", 3)
    assert clipped_at_top is not None and [e.user_id for e in clipped_at_top.around] == ["u0", "u1", "u2", "u3", "u4"]
    clipped_at_end = await database.standing("u6", 1)
    assert clipped_at_end is not None and [e.user_id for e in clipped_at_end.around] == ["u5", "u6"]
    alone = await database.standing("u6", 0)
    assert alone is not None and (alone.rank, alone.around) == (7, ())
    assert await database.standing("nobody", 2) is None


async def test_save_user_creates_and_renames(database: Database) -> None:
    created = await database.save_user("u1", "Ada")
    assert (created.user_id, created.display_name, created.score) == ("u1", "Ada", 0)
    await _score(database, "u1", 10)
    renamed = await database.save_user("u1", "Ada L.")
    assert (renamed.display_name, renamed.score) == ("Ada L.", 10)
    standing = await database.standing("u1", 0)
    assert standing is not None and standing.entry.display_name == "Ada L."


async def test_a_deleted_user_leaves_every_read_and_refuses_writes(database: Database) -> None:
    await database.save_user("gone", "Bob")
    await _score(database, "gone", 50, "before")
    await _score(database, "stays", 10)
    assert await database.delete_user("gone")
    assert await database.standing("gone", 1) is None
    assert _ranking(await database.ranked(0, 10)) == [("stays", 10)]
    with pytest.raises(UserDeleted):
        await _score(database, "gone", 10)
    with pytest.raises(UserDeleted):
        await database.save_user("gone", "Bob")
    replay = await _apply(database, "gone", "before", 50)
    assert (replay.applied, replay.new_score) == (False, 50)  # the record outlives the user
    assert not await database.delete_user("nobody")


async def test_ping_answers(database: Database) -> None:
    await database.ping()
