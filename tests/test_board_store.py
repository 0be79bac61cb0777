"""The BoardStore protocol on both dialects: boards, and increments counted on every board and
period in the batch's own transaction, with keys from the `now` the caller passes."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from app.boards import DEFAULT_MAIN, BoardConfig
from app.domain import Increment
from app.errors import AppError
from app.periods import period_key, zone
from app.store import Database

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W48
NEXT_WEEK = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ALL_PERIODS = ("all", "daily", "weekly", "monthly")


async def _apply(store: Database, user: str, action: str = "complete", delta: int = 10, now: datetime = NOW,
                 action_id: str | None = None) -> None:
    inc = Increment(user, action_id or uuid.uuid4().hex, action, delta, "g")
    [outcome] = await store.apply_increments([inc], now)
    if isinstance(outcome, AppError):
        raise outcome


def _ranking(entries: list[object]) -> list[tuple[str, int]]:
    return [(e.user_id, e.score) for e in entries]  # type: ignore[attr-defined]


async def test_main_exists_and_boards_are_saved_and_deleted(database: Database) -> None:
    assert await database.boards() == [DEFAULT_MAIN]
    weekly = BoardConfig("weekly-wins", "Wins this week", ("win",), ("weekly",), "Europe/Paris")
    assert await database.save_board(weekly) == weekly
    replaced = BoardConfig("weekly-wins", "Wins", None, ("all", "daily"), "UTC")
    await database.save_board(replaced)
    assert await database.boards() == [DEFAULT_MAIN, replaced]
    assert await database.delete_board("weekly-wins")
    assert not await database.delete_board("weekly-wins")
    assert await database.boards() == [DEFAULT_MAIN]


async def test_one_increment_counts_on_every_board_and_period_that_counts_its_action(database: Database) -> None:
    await database.save_board(BoardConfig("wins", "Wins", ("win",), ALL_PERIODS))
    await database.save_board(BoardConfig("any", "Any", None, ("daily",), "Asia/Tokyo"))
    await _apply(database, "u1", "win", 25)
    await _apply(database, "u1", "complete", 10)
    await _apply(database, "u2", "win", 25)
    assert _ranking(await database.ranked(0, 10)) == [("u1", 35), ("u2", 25)]
    for key in ("all", "2026-11-25", "2026-W48", "2026-11"):
        assert _ranking(await database.board_ranked("wins", key, 0, 10)) == [("u1", 25), ("u2", 25)], key
    assert _ranking(await database.board_ranked("any", "2026-11-25", 0, 10)) == [("u1", 35), ("u2", 25)]
    assert await database.board_ranked("main", "2026-11-25", 0, 10) == []  # main has only `all`


async def test_periods_are_keys_a_new_period_starts_empty_and_the_old_one_stays(database: Database) -> None:
    await database.save_board(BoardConfig("b", "B", None, ("all", "weekly")))
    await _apply(database, "u1", delta=10)
    await _apply(database, "u2", delta=10, now=NEXT_WEEK)
    await _apply(database, "u1", delta=5, now=NEXT_WEEK)
    assert _ranking(await database.board_ranked("b", "2026-W48", 0, 10)) == [("u1", 10)]
    assert _ranking(await database.board_ranked("b", "2026-W49", 0, 10)) == [("u2", 10), ("u1", 5)]
    assert _ranking(await database.board_ranked("b", "all", 0, 10)) == [("u1", 15), ("u2", 10)]


async def test_board_ties_rank_by_who_reached_the_score_first_and_standing_has_the_window(database: Database) -> None:
    await database.save_board(BoardConfig("b", "B", None, ("daily",)))
    await _apply(database, "late", delta=20)
    await _apply(database, "early", delta=10)
    await _apply(database, "early", delta=10)  # reaches 20 on this board after "late"
    await _apply(database, "low", delta=5)
    assert _ranking(await database.board_ranked("b", "2026-11-25", 0, 10)) == [("late", 20), ("early", 20), ("low", 5)]
    standing = await database.board_standing("b", "2026-11-25", "early", 1)
    assert standing is not None and standing.rank == 2
    assert [e.user_id for e in standing.around] == ["late", "early", "low"]
    assert await database.board_standing("b", "2026-11-25", "nobody", 0) is None
    assert await database.board_standing("b", "2026-11-26", "early", 0) is None


async def test_a_deleted_user_leaves_every_board_at_once(database: Database) -> None:
    await database.save_board(BoardConfig("b", "B", None, ALL_PERIODS))
    await database.save_user("gone", "Bob")
    await _apply(database, "gone", delta=50)
    await _apply(database, "stays", delta=10)
    assert await database.delete_user("gone")
    for key in ("all", "2026-11-25", "2026-W48", "2026-11"):
        assert _ranking(await database.board_ranked("b", key, 0, 10)) == [("stays", 10)]
        assert await database.board_standing("b", key, "gone", 0) is None


async def test_a_replay_changes_nothing_on_any_board(database: Database) -> None:
    await database.save_board(BoardConfig("b", "B", None, ("all", "daily")))
    await _apply(database, "u1", action_id="once")
    await _apply(database, "u1", action_id="once")
    await _apply(database, "u1", action_id="once", now=NEXT_WEEK)  # a replay in another period too
    assert _ranking(await database.board_ranked("b", "all", 0, 10)) == [("u1", 10)]
    assert _ranking(await database.board_ranked("b", "2026-11-25", 0, 10)) == [("u1", 10)]
    assert await database.board_ranked("b", "2026-12-01", 0, 10) == []


async def test_a_batch_counts_each_users_points_per_pair(database: Database) -> None:
    await database.save_board(BoardConfig("wins", "Wins", ("win",), ("daily",)))
    batch = [Increment("u1", "a1", "win", 25, "g"), Increment("u1", "a2", "complete", 10, "g"),
             Increment("u2", "a3", "win", 25, "g"), Increment("u1", "a4", "win", 25, "g"),
             Increment("u1", "a1", "win", 25, "g")]  # a replay within the batch
    outcomes = await database.apply_increments(batch, NOW)
    assert [getattr(o, "applied", None) for o in outcomes] == [True, True, True, True, False]
    assert _ranking(await database.board_ranked("wins", "2026-11-25", 0, 10)) == [("u1", 50), ("u2", 25)]


async def test_a_batch_returns_the_watched_pairs_rows_and_names_the_others_once(database: Database) -> None:
    await database.save_board(BoardConfig("b", "B", None, ("all", "daily")))
    await database.save_user("u2", "Two")
    await _apply(database, "gone")
    assert await database.delete_user("gone")
    batch = [Increment("u1", "a1", "complete", 10, "g"), Increment("u2", "a2", "complete", 5, "g"),
             Increment("u1", "a3", "complete", 1, "g")]
    outcomes = await database.apply_increments(batch, NOW, watched={("b", "all"), ("b", "elsewhere")})
    watched = [(p.board_id, p.key, p.entry.user_id, p.entry.score) for o in outcomes
               for p in getattr(o, "pairs", ()) if p.entry is not None]
    held = {(p.board_id, p.key) for o in outcomes for p in getattr(o, "pairs", ()) if p.entry is None}
    assert sorted(set(watched)) == [("b", "all", "u1", 11), ("b", "all", "u2", 5)]
    assert held == {("b", "2026-11-25")}  # every applied result names it: the batch changed it
    assert all(len([p for p in o.pairs if p.entry is None]) == 1 for o in outcomes)  # type: ignore[union-attr]
    # What a process reads back when the pair turns out to be watched: the rows as committed
    found = await database.board_entries("b", "2026-11-25", ["u1", "u2", "gone", "nobody"])
    assert sorted((e.user_id, e.display_name, e.score) for e in found) == [("u1", None, 11), ("u2", "Two", 5)]
    assert await database.board_entries("b", "2026-11-25", []) == []


async def test_a_board_change_applies_to_later_increments_only(database: Database) -> None:
    await _apply(database, "u1", delta=10)
    await database.save_board(BoardConfig("b", "B", None, ("all",)))
    await _apply(database, "u1", delta=5)
    assert _ranking(await database.board_ranked("b", "all", 0, 10)) == [("u1", 5)]
    await database.save_board(BoardConfig("main", "Main", None, ("all", "daily")))
    await _apply(database, "u2", delta=7)
    assert _ranking(await database.board_ranked("main", "2026-11-25", 0, 10)) == [("u2", 7)]
    assert _ranking(await database.ranked(0, 10)) == [("u1", 15), ("u2", 7)]


@pytest.mark.parametrize("instant", [
    datetime(2026, 11, 25, 23, 30, tzinfo=UTC),  # already Thursday in Tokyo and Auckland
    datetime(2026, 11, 29, 23, 30, tzinfo=UTC),  # Sunday night in UTC: Monday of W49 in Tokyo
    datetime(2026, 11, 30, 11, 0, tzinfo=UTC),  # still November in Los Angeles, December in Auckland
    datetime(2026, 12, 31, 23, 59, tzinfo=UTC),  # ISO week 53 of 2026, and 2027 in Tokyo
    datetime(2027, 1, 3, 12, 0, tzinfo=UTC),  # a Sunday still in 2026-W53
])
async def test_the_database_computes_the_keys_the_periods_module_does(database: Database, instant: datetime) -> None:
    zones = ("UTC", "Asia/Tokyo", "America/Los_Angeles", "Pacific/Auckland")
    for number, name in enumerate(zones):
        await database.save_board(BoardConfig(f"z{number}", name, None, ("daily", "weekly", "monthly"), name))
    await _apply(database, "u1", now=instant)
    for number, name in enumerate(zones):
        for period in ("daily", "weekly", "monthly"):
            key = period_key(period, instant, zone(name))
            assert _ranking(await database.board_ranked(f"z{number}", key, 0, 10)) == [("u1", 10)], (name, period, key)
