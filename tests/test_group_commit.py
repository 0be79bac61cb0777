"""Group commit on both stores: a mixed batch keeps every increment's own outcome, none fails its
neighbours, ties rank by who reached the score first, and the batcher answers each caller."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from app.batching import Batcher
from app.config import Settings
from app.domain import Increment, IncrementResult
from app.errors import UserDeleted, ValidationFailed
from app.store import Database, open_store
from app.store.migrations import migrate
from app.store.queries import INT64_MAX
from tests.conftest import auth

DIALECTS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres")]


@pytest.fixture(params=DIALECTS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path}/a.db" if request.param == "sqlite" else request.getfixturevalue("postgres_schema").url
    await asyncio.to_thread(migrate, url)
    async with open_store(url, 5.0) as opened:
        yield opened


def inc(user_id: str, action_id: str, delta: int = 10) -> Increment:
    return Increment(user_id, action_id, "complete", delta, "game-1")


def applied(outcome: object) -> IncrementResult:
    assert isinstance(outcome, IncrementResult), outcome
    return outcome


async def test_mixed_batch_keeps_each_outcome(store: Database) -> None:
    before = await store.apply_increments([inc("a", "old"), inc("big", "huge", INT64_MAX - 5), inc("gone", "g0")])
    assert all(applied(o).applied for o in before)
    await store.delete_user("gone")
    batch = [inc("a", "n1"), inc("a", "old"), inc("gone", "n2"), inc("big", "n3"), inc("a", "n1"),
             inc("b", "n4"), inc("a", "n5"), inc("z", "old")]
    out = await store.apply_increments(batch)
    assert (applied(out[0]).new_score, applied(out[0]).applied) == (20, True)
    assert applied(out[1]) == replace(applied(before[0]), applied=False)  # the record
    assert isinstance(out[2], UserDeleted)
    assert isinstance(out[3], ValidationFailed)  # score overflow: this one only
    assert applied(out[4]) == replace(applied(out[0]), applied=False)  # an in-batch replay
    assert (applied(out[5]).new_score, applied(out[6]).new_score) == (10, 30)
    assert applied(out[7]).user_id == "a"  # the record of "old": the service turns it into a 409
    assert applied(out[0]).seq < applied(out[5]).seq < applied(out[6]).seq  # batch order is event order
    top = await store.ranked(0, 10)
    assert [(e.user_id, e.score, e.seq) for e in top if e.user_id in ("a", "b")] == [
        ("a", 30, applied(out[6]).seq), ("b", 10, applied(out[5]).seq)]
    assert (await store.recorded(["n2", "n3"])) == {}  # refused increments leave no trace


async def test_ties_rank_by_who_reached_the_score_first(store: Database) -> None:
    await store.apply_increments([inc("x", "x1", 5), inc("y", "y1", 10)])
    await store.apply_increments([inc("y", "y2", -5), inc("x", "x2", 5), inc("z", "z1", 10)])
    ranked = [(e.user_id, e.score) for e in await store.ranked(0, 3)]
    assert ranked == [("x", 10), ("z", 10), ("y", 5)]  # x reached 10 in the batch before z


async def test_a_batch_of_only_refusals_writes_nothing(store: Database) -> None:
    await store.apply_increments([inc("gone", "g0")])
    await store.delete_user("gone")
    out = await store.apply_increments([inc("gone", "g1"), inc("gone", "g2")])
    assert all(isinstance(o, UserDeleted) for o in out)
    assert (await store.recorded(["g1", "g2"])) == {}


async def test_batcher_answers_each_submitter_and_bounds_the_batch() -> None:
    sizes: list[int] = []

    async def flush(items: Any) -> list[int | BaseException]:
        sizes.append(len(items))
        return [ValueError(item) if item % 7 == 0 else item * 2 for item in items]

    batcher: Batcher[int, int] = Batcher(flush, window=0.01, max_size=8, concurrency=2)
    answers = await asyncio.gather(*(batcher.submit(i) for i in range(1, 30)), return_exceptions=True)
    assert [a if isinstance(a, int) else "error" for a in answers] == [
        "error" if i % 7 == 0 else i * 2 for i in range(1, 30)]
    assert max(sizes) <= 8 and sum(sizes) == 29 and len(sizes) < 29


async def test_batcher_gathers_a_trickle_into_one_batch_while_a_slow_flush_runs() -> None:
    # Flushes take 0.2 s with 4 allowed at once: once one has been timed, a batch started while
    # another runs waits 0.05 s after the previous start, so items arriving 5 ms apart in that
    # time share one batch instead of taking the free slots one by one.
    sizes: list[int] = []

    async def flush(items: Any) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.2)
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush, window=0.001, max_size=64, concurrency=4)
    assert await batcher.submit(0) == 0  # times a flush
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)  # the first batch is running
    trickle = []
    for item in range(2, 7):
        trickle.append(asyncio.ensure_future(batcher.submit(item)))
        await asyncio.sleep(0.005)
    assert await asyncio.gather(first, *trickle) == [1, 2, 3, 4, 5, 6]
    assert sizes == [1, 1, 5]


async def test_concurrent_mixed_requests_each_get_their_answer(make_client: Any, settings: Settings) -> None:
    # A long window puts the concurrent requests of this test into one batch.
    client = await make_client(replace(settings, batch_window=0.2))
    old = {"userId": "a", "actionId": "old"}
    assert (await client.post("/scores/increment", json=old, headers=auth())).status == 200
    assert (await client.put("/users/gone", json={"displayName": "g"}, headers=auth())).status == 200
    assert (await client.delete("/users/gone", headers=auth())).status == 204
    bodies = [{"userId": "a", "actionId": "n1"}, {"userId": "a", "actionId": "old"},
              {"userId": "b", "actionId": "old"}, {"userId": "gone", "actionId": "n2"},
              {"userId": "a", "actionId": "n1"}, {"userId": "c", "actionId": uuid4().hex}]
    responses = await asyncio.gather(*(client.post("/scores/increment", json=b, headers=auth()) for b in bodies))
    statuses = [r.status for r in responses]
    assert statuses == [200, 200, 409, 410, 200, 200]
    replies = [await r.json() for r in responses]
    assert {replies[0]["applied"], replies[4]["applied"]} == {True, False}  # in-batch duplicate: once
    assert replies[1]["applied"] is False and replies[5]["newScore"] == 10
    assert (await (await client.get("/scores/a")).json())["score"] == 20


async def test_batch_without_repeats_or_overflow_new_replay_deleted(store: Database) -> None:
    # On PostgreSQL this batch takes the one-statement path (no actionId twice, no overflow).
    first = await store.apply_increments([inc("a", "old"), inc("gone", "g0")])
    await store.delete_user("gone")
    out = await store.apply_increments([inc("a", "n1"), inc("z", "old"), inc("gone", "n2"), inc("b", "n3"),
                                        inc("a", "n4", -3)])
    assert applied(out[1]) == replace(applied(first[0]), applied=False)  # the record, whoever asks
    assert isinstance(out[2], UserDeleted)
    assert [(applied(o).new_score, applied(o).applied) for o in (out[0], out[3], out[4])] == [
        (20, True), (10, True), (17, True)]
    assert applied(out[0]).seq < applied(out[3]).seq < applied(out[4]).seq
    entries = {e.user_id: (e.score, e.seq) for e in await store.ranked(0, 10)}
    assert entries["a"] == (17, applied(out[4]).seq) and entries["b"] == (10, applied(out[3]).seq)
    assert set(await store.recorded(["n1", "n2", "n3", "n4"])) == {"n1", "n3", "n4"}
