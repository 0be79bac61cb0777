"""The change feed and the repair built on it, on both databases and both read models.

A pass reads only what changed since the board's mark and no upsert recorded as applied; a lost
board is rebuilt in pages; a transaction still open at one pass's horizon is picked up by the next one.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from aiohttp.test_utils import TestClient

from app.domain import Entry, Increment, IncrementResult
from app.http.keys import RECONCILER
from app.live import Live, ReadModelIncomplete, open_live
from app.reconcile import FEED_START, Reconciler
from app.store import Database, open_store
from app.store.migrations import migrate
from tests.conftest import PostgresSchema, auth, eventually
from tests.services import require_redis

PAIRS = [pytest.param(("sqlite", None), id="sqlite+memory"), pytest.param(("postgres", "redis"), id="postgres+redis")]


@pytest.fixture(params=PAIRS)
async def opened(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Database, Live]]:
    dialect, live_kind = request.param
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path}/feed.db"
    else:
        url = request.getfixturevalue("postgres_schema").url
    migrate(url)
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    async with open_store(url, 5.0) as store, open_live(live_kind and require_redis(), prefix) as live:
        try:
            yield store, live
        finally:
            if live.redis is not None:
                keys = [key async for key in live.redis.scan_iter(match=f"{prefix}*")]
                if keys:
                    await live.redis.delete(*keys)


async def _increment(store: Database, user_id: str) -> IncrementResult:
    [outcome] = await store.apply_increments([Increment(user_id, uuid.uuid4().hex, "complete", 10, "test")])
    assert isinstance(outcome, IncrementResult), outcome
    return outcome


async def _announce(live: Live, results: list[IncrementResult]) -> None:
    """What the service does after a commit: the entries, with their transactions' keys as applied."""
    await live.board.upsert([r.entry for r in results], applied={r.change_key for r in results if r.change_key})


async def _all_changes(store: Database, since: int) -> list[str]:
    return [change.entry.user_id for change in await store.changes(since, (since, ""), 1000)]


async def test_the_feed_holds_what_changed_since_a_horizon(opened: tuple[Database, Live]) -> None:
    store, _ = opened
    await store.save_user("old", "before")
    horizon = await store.change_horizon()
    await _increment(store, "new")
    await store.save_user("old", "renamed")
    changes = await store.changes(horizon, (horizon, ""), 10)
    assert sorted(change.entry.user_id for change in changes) == ["new", "old"]
    renamed = next(change.entry for change in changes if change.entry.user_id == "old")
    assert (renamed.display_name, renamed.name_version) == ("renamed", 1)

    async def nothing_after_a_later_horizon() -> None:
        assert await _all_changes(store, await store.change_horizon()) == []

    # the horizon is the cluster's oldest open transaction: another session's (a parallel test run,
    # a benchmark's bulk UPDATE) holds it back until it ends
    await eventually(nothing_after_a_later_horizon, 60)


async def test_pages_follow_the_keyset_without_repeats(opened: tuple[Database, Live]) -> None:
    store, _ = opened
    for i in range(25):
        await store.save_user(f"u{i:02d}", "x")
    seen: list[str] = []
    after = (FEED_START, "")
    while page := await store.changes(FEED_START, after, 7):
        seen.extend(change.entry.user_id for change in page)
        after = (page[-1].key, page[-1].entry.user_id)
    assert sorted(seen) == [f"u{i:02d}" for i in range(25)] and len(seen) == 25


async def test_a_lost_board_is_rebuilt_in_pages_and_then_trusted(opened: tuple[Database, Live]) -> None:
    store, live = opened
    for i in range(30):
        await store.save_user(f"u{i}", f"name{i}")
        await _increment(store, f"u{i}")
    await store.delete_user("u3")
    with pytest.raises(ReadModelIncomplete):
        await live.board.top(1)
    reconciler = Reconciler(store, live, interval=60, page=4, repair_page=3)
    assert await reconciler.reconcile() == 30
    assert reconciler.rebuilds == 1
    assert [entry.user_id for entry in await live.board.top(50)] == [f"u{i}" for i in range(30) if i != 3]
    assert await live.board.standing("u3", 0) is None
    await store.save_user("u5", "renamed")
    applied = await reconciler.reconcile()
    if live.redis is None:
        assert applied == 1  # only what changed since the mark
    else:  # the horizon is the cluster's oldest open transaction: another session's may hold it back
        assert 1 <= applied <= 31
    assert (await live.board.standing("u5", 0)).entry.display_name == "renamed"  # type: ignore[union-attr]


async def test_a_transaction_open_at_the_horizon_is_repaired_next_pass(
        opened: tuple[Database, Live], request: pytest.FixtureRequest) -> None:
    store, live = opened
    if live.redis is None:
        pytest.skip("SQLite runs one writer at a time: no transaction spans a horizon")
    schema: PostgresSchema = request.getfixturevalue("postgres_schema")
    await store.save_user("slow", "s")
    reconciler = Reconciler(store, live, interval=60)
    await reconciler.reconcile()
    conn = psycopg2.connect(schema.base_url)
    try:
        with conn.cursor() as cur:  # a writer that started before the pass and commits after it
            cur.execute(f"UPDATE {schema.name}.users SET score = 99, seq = seq + 1000 WHERE user_id = 'slow'")
            await reconciler.reconcile()
            conn.commit()
    finally:
        conn.close()
    await reconciler.reconcile()
    assert await live.board.top(1) == [Entry("slow", "s", 99, (await live.board.top(1))[0].seq)]


async def test_passes_by_two_processes_take_turns(opened: tuple[Database, Live]) -> None:
    store, live = opened
    if live.redis is None:
        pytest.skip("the in-process read model serves one process")
    await store.save_user("u", "a")
    async with open_live(require_redis(), live.prefix) as other_process:
        assert await other_process.lease.claim(30)  # the other process is repairing
        assert await asyncio.wait_for(Reconciler(store, live, interval=60).reconcile(), 5) is None
        await other_process.lease.release()
    assert await Reconciler(store, live, interval=60).reconcile() == 1


async def test_a_repair_reads_only_the_transactions_no_upsert_recorded(opened: tuple[Database, Live]) -> None:
    store, live = opened
    reconciler = Reconciler(store, live, interval=60)
    await reconciler.reconcile()  # the board's mark: every later transaction is after it
    outcomes = await store.apply_increments([Increment(u, uuid.uuid4().hex, "complete", 10, "t") for u in "abc"])
    batch = [o for o in outcomes if isinstance(o, IncrementResult)]
    assert len(batch) == 3 and all(r.change_key is not None for r in batch)
    await _announce(live, batch)
    lost = await _increment(store, "d")  # its process died between commit and upsert
    assert await reconciler.reconcile() == 1  # d only: the batch's transaction is on the board
    assert [entry.user_id for entry in await live.board.top(10)] == ["a", "b", "c", "d"]
    assert (await live.board.standing("d", 0)).entry == lost.entry  # type: ignore[union-attr]
    assert await reconciler.reconcile() == 0


async def test_an_applied_batch_carries_the_name_it_committed_with(opened: tuple[Database, Live]) -> None:
    store, live = opened
    reconciler = Reconciler(store, live, interval=60)
    await store.save_user("u", "first")
    await store.save_user("u", "second")
    await reconciler.reconcile()  # the board knows the second name (version 1)
    await store.save_user("u", "third")  # version 2; its write to the board failed
    result = await _increment(store, "u")
    await _announce(live, [result])  # the batch's transaction is recorded as applied: no repair reads u
    await reconciler.reconcile()
    assert (await live.board.standing("u", 0)).entry.display_name == "third"  # type: ignore[union-attr]


async def test_the_services_increments_are_not_read_again_by_the_repair(client: TestClient[Any, Any]) -> None:
    reconciler = client.server.app[RECONCILER]

    async def built() -> None:
        assert reconciler.runs >= 1

    await eventually(built, 10)
    before = reconciler.repaired
    for user_id in ("a", "b", "c"):
        body = {"userId": user_id, "actionId": uuid.uuid4().hex}
        assert (await client.post("/scores/increment", json=body, headers=auth())).status == 200
    assert (await client.get("/scores/c")).status == 200  # a read waits for this process's upserts
    assert await reconciler.reconcile() in (0, None)  # None: a pass of the background loop holds the lease
    assert reconciler.repaired == before
