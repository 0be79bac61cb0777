"""The (board, period key) read models: the Pairs contract over memory and Redis, then the service
over every backend pair (the model equals the database; expiry, period boundaries, deletions and
failed writes fall back to the database)."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.domain import Entry, Increment
from app.http.keys import BOARDS, LIVE, RECONCILER, SCOREBOARD, STORE
from app.live import Live, PairRows, Pairs, ReadModelIncomplete, open_live
from app.web import create_app
from tests.conftest import BASE_SETTINGS, PostgresSchema, auth, eventually
from tests.services import require_redis
from tests.test_boards_api import FakeClock
from tests.test_live_contract import _drop_keys

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()
Client = TestClient[Any, Any]


@pytest.fixture(params=["memory", "redis"])
async def live(request: pytest.FixtureRequest) -> AsyncIterator[Live]:
    prefix = f"test:{uuid.uuid4().hex}:"
    url = None if request.param == "memory" else require_redis()
    async with open_live(url, prefix) as opened:
        try:
            yield opened
        finally:
            if opened.redis is not None:
                await _drop_keys(opened.redis, prefix)


def w(user_id: str, score: int, seq: int, board_id: str = "b", key: str = "all",
      expires: float | None = None) -> PairRows:
    return PairRows(board_id, key, [Entry(user_id, None, score, seq)], expires, None if expires is None else 3600)


async def build(live: Live, writes: list[PairRows], board_id: str = "b", key: str = "all",
                expires: float | None = None) -> bool:
    token = await live.pairs.start_build(board_id, key)
    await live.board.upsert([], pairs=writes)
    return await live.pairs.finish_build(board_id, key, token, expires, None if expires is None else 3600)


async def ids(pairs: Pairs, board_id: str = "b", key: str = "all", now: float = NOW) -> list[str]:
    return [entry.user_id for entry in await pairs.top(board_id, key, 50, now)]


async def test_a_pair_answers_only_once_built_and_ranks_as_the_board(live: Live) -> None:
    await live.board.upsert([], pairs=[w("a", 5, 3)])
    with pytest.raises(ReadModelIncomplete):
        await live.pairs.top("b", "all", 10, NOW)
    assert await build(live, [w("b", 5, 2), w("c", 9, 4)])
    await live.board.upsert([], pairs=[w("a", 7, 6), w("b", 1, 1)])  # an older seq never moves b back
    assert await ids(live.pairs) == ["c", "a", "b"]
    standing = await live.pairs.standing("b", "all", "a", 1, NOW)
    assert standing is not None and standing.rank == 2 and [e.user_id for e in standing.around] == ["c", "a", "b"]
    assert await live.pairs.standing("b", "all", "nobody", 1, NOW) is None
    with pytest.raises(ReadModelIncomplete):  # another pair of the board is its own model
        await live.pairs.top("b", "2026-11-25", 10, NOW)


async def test_rows_held_back_are_asked_for_only_by_a_watched_pair(live: Live) -> None:
    def held(board_id: str, key: str = "all") -> PairRows:
        return PairRows(board_id, key, None, None, None)

    assert await live.board.upsert([], pairs=[held("b"), w("a", 1, 1, "c")]) == []
    assert set(live.board.watched()) == set()
    token = await live.pairs.start_build("b", "all")  # by any process
    assert await live.board.upsert([], pairs=[held("b"), held("c")]) == [("b", "all")]
    assert set(live.board.watched()) == {("b", "all")}
    await live.board.upsert([], pairs=[w("a", 3, 2)])  # what the caller then sends
    assert await live.pairs.finish_build("b", "all", token, None, None)
    assert await ids(live.pairs) == ["a"]
    assert await live.board.upsert([], pairs=[w("z", 1, 3), held("c")]) == []  # a pair with its rows asks nothing


async def test_forgetting_stops_trust_and_a_build_started_before_is_not_marked(live: Live) -> None:
    assert await build(live, [w("a", 1, 1)], "b") and await build(live, [w("a", 1, 1, "c")], "c")
    await live.pairs.forget("b")
    with pytest.raises(ReadModelIncomplete):
        await live.pairs.top("b", "all", 10, NOW)
    assert await ids(live.pairs, "c") == ["a"]  # another board's pairs stay
    token = await live.pairs.start_build("c", "all")
    await live.pairs.forget()
    with pytest.raises(ReadModelIncomplete):
        await live.pairs.top("c", "all", 10, NOW)
    assert not await live.pairs.finish_build("c", "all", token, None, None)
    first = await live.pairs.start_build("c", "all")
    second = await live.pairs.start_build("c", "all")  # another process rebuilds it meanwhile
    assert not await live.pairs.finish_build("c", "all", first, None, None)
    assert await live.pairs.finish_build("c", "all", second, None, None)


async def test_an_expired_pair_is_not_trusted(live: Live) -> None:
    assert await build(live, [w("a", 1, 1, key="2026-11-25", expires=NOW + 60)], key="2026-11-25", expires=NOW + 60)
    assert await ids(live.pairs, key="2026-11-25", now=NOW + 59) == ["a"]
    with pytest.raises(ReadModelIncomplete):
        await live.pairs.top("b", "2026-11-25", 10, NOW + 60)


async def test_a_removed_user_leaves_every_pair_at_once_and_for_good(live: Live) -> None:
    await live.board.set_mark(0)
    assert await build(live, [w("gone", 9, 1), w("stays", 1, 2)])
    await live.board.remove("gone")
    with pytest.raises(ReadModelIncomplete):  # it still holds the user: not trusted from this step on
        await live.pairs.top("b", "all", 10, NOW)
    assert await build(live, [w("stays", 1, 2)])
    await live.board.upsert([], pairs=[w("gone", 20, 5)])  # a batch committed before the deletion
    assert await ids(live.pairs) == ["stays"]


async def test_names_are_the_boards(live: Live) -> None:
    await live.board.set_mark(0)
    named = PairRows("b", "all", [Entry("a", "alice", 5, 1, name_version=1)], None, None)
    assert await build(live, [named])
    assert [e.display_name for e in await live.pairs.top("b", "all", 1, NOW)] == ["alice"]
    await live.board.upsert([Entry("a", "alicia", 0, 0, name_version=2)])  # a rename
    assert [e.display_name for e in await live.pairs.top("b", "all", 1, NOW)] == ["alicia"]


# The service, on every backend pair


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 25, 23, 58, 0, tzinfo=UTC))


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, clock: FakeClock) -> Client:
    made: Client = await aiohttp_client(create_app(replace_actions(settings), clock))
    for board_id, actions in (("b", None), ("bonus", ["bonus"])):
        response = await made.put(f"/boards/{board_id}", headers=auth("boards:write"), json={
            "title": board_id, "periods": ["all", "daily", "weekly"], "actions": actions})
        assert response.status == 200
    return made


def replace_actions(settings: Settings) -> Settings:
    return replace(settings, actions={"complete": 10, "bonus": 3})


async def _inc(client: Client, user: str, action: str = "complete") -> None:
    body = {"userId": user, "actionId": uuid.uuid4().hex, "action": action}
    assert (await client.post("/scores/increment", json=body, headers=auth())).status == 200


async def _built(client: Client, board_id: str, key: str) -> None:
    """Read the pair (which starts its build) until its model answers."""
    async def check() -> None:
        await client.app[BOARDS].top(board_id, key, 10)
        try:
            await client.app[LIVE].pairs.top(board_id, key, 10, client.app[BOARDS].clock().timestamp())
        except ReadModelIncomplete as exc:
            raise AssertionError("not built yet") from exc
    await eventually(check)


async def _same_as_the_database(client: Client, board_id: str, key: str, users: list[str]) -> None:
    app, now = client.app, client.app[BOARDS].clock().timestamp()
    await app[SCOREBOARD].announced()
    model = await app[LIVE].pairs.top(board_id, key, 50, now)
    assert model == await app[STORE].board_ranked(board_id, key, 0, 50)
    assert await app[BOARDS].top(board_id, key, 50) == model
    for user in users:
        assert await app[LIVE].pairs.standing(board_id, key, user, 2, now) == \
            await app[STORE].board_standing(board_id, key, user, 2)


async def test_each_pair_model_equals_the_database(client: Client) -> None:
    users = [f"u{i}" for i in range(6)]
    for i, user in enumerate(users):
        for _ in range(i % 3 + 1):
            await _inc(client, user, "bonus" if i % 2 else "complete")
    pairs = [(b, k) for b in ("b", "bonus") for k in ("all", "2026-11-25", "2026-W48")]
    for board_id, key in pairs:
        await _built(client, board_id, key)
    for i, user in enumerate(users):  # after the builds: the batches' own writes keep the models
        await _inc(client, user, "complete" if i % 2 else "bonus")
    await client.put("/users/u1", json={"displayName": "one"}, headers=auth("users:write"))
    for board_id, key in pairs:
        await _same_as_the_database(client, board_id, key, [*users, "nobody"])


async def test_an_expired_pair_reads_from_the_database(client: Client, clock: FakeClock) -> None:
    await _inc(client, "u1")
    await _built(client, "b", "2026-11-25")
    clock.now += timedelta(days=5)  # the day ended, and its retention too
    now = clock().timestamp()
    with pytest.raises(ReadModelIncomplete):
        await client.app[LIVE].pairs.top("b", "2026-11-25", 10, now)
    body = await (await client.get("/boards/b/top?period=daily&at=2026-11-25")).json()
    assert [(e["userId"], e["score"]) for e in body["entries"]] == [("u1", 10)]
    with pytest.raises(ReadModelIncomplete):  # its rebuild is marked expired too: the database stays
        await client.app[LIVE].pairs.top("b", "2026-11-25", 10, now)


async def test_a_period_boundary_crossed_with_the_models_built(client: Client, clock: FakeClock) -> None:
    await _inc(client, "early")
    await _built(client, "b", "2026-11-25")
    clock.now += timedelta(minutes=3)  # 00:01 on the 26th
    await _inc(client, "late")
    await _built(client, "b", "2026-11-26")
    await _same_as_the_database(client, "b", "2026-11-25", ["early", "late"])
    await _same_as_the_database(client, "b", "2026-11-26", ["early", "late"])
    assert [e.user_id for e in await client.app[BOARDS].top("b", "2026-11-26", 10)] == ["late"]
    assert [e.user_id for e in await client.app[BOARDS].top("b", "2026-11-25", 10)] == ["early"]


async def test_a_deleted_user_leaves_every_built_pair_at_once(client: Client) -> None:
    await _inc(client, "gone")
    await _inc(client, "stays", "bonus")
    pairs = [(b, k) for b in ("b", "bonus") for k in ("all", "2026-11-25")]
    for board_id, key in pairs:
        await _built(client, board_id, key)
    assert (await client.delete("/users/gone", headers=auth("users:delete"))).status == 204
    for board_id, key in pairs:
        assert "gone" not in [e.user_id for e in await client.app[BOARDS].top(board_id, key, 10)]
        assert (await client.get(f"/boards/{board_id}/scores/gone")).status == 404
    await _built(client, "b", "all")
    await _same_as_the_database(client, "b", "all", ["gone", "stays"])


async def test_a_failed_board_write_makes_the_pairs_fall_back(client: Client, clock: FakeClock) -> None:
    await _inc(client, "u1")
    await _built(client, "b", "all")
    app = client.app
    # A batch committed whose read-model write did not happen (a failed write, or a process gone).
    [lost] = await app[STORE].apply_increments([Increment("u2", uuid.uuid4().hex, "complete", 10, "t")], clock())
    app[LIVE].freshness.write_failed()
    assert [e.user_id for e in await app[BOARDS].top("b", "all", 10)] == ["u1", "u2"]  # this process: the database
    await app[RECONCILER].reconcile()  # the repair makes every process forget the pairs
    with pytest.raises(ReadModelIncomplete):
        await app[LIVE].pairs.top("b", "all", 10, clock().timestamp())
    await _built(client, "b", "all")
    await _same_as_the_database(client, "b", "all", ["u1", "u2"])


async def test_a_transaction_nobody_applied_makes_the_pairs_fall_back(client: Client, clock: FakeClock) -> None:
    await _inc(client, "u1")
    await _built(client, "b", "all")
    app = client.app
    await app[RECONCILER].reconcile()  # nothing unapplied: the pairs stay trusted
    assert [e.user_id for e in await app[LIVE].pairs.top("b", "all", 10, clock().timestamp())] == ["u1"]
    # Another process committed a batch and died before its read-model write: this one saw no failure.
    await app[STORE].apply_increments([Increment("u2", uuid.uuid4().hex, "complete", 10, "t")], clock())
    assert app[LIVE].freshness.trusted
    await app[RECONCILER].reconcile()  # finds the transaction in no upsert's record
    with pytest.raises(ReadModelIncomplete):
        await app[LIVE].pairs.top("b", "all", 10, clock().timestamp())
    await _built(client, "b", "all")
    await _same_as_the_database(client, "b", "all", ["u1", "u2"])


async def test_a_pair_another_process_builds_takes_this_processs_writes(
        aiohttp_client: Any, postgres_schema: PostgresSchema, redis_prefix: str, clock: FakeClock) -> None:
    settings = replace_actions(replace(BASE_SETTINGS, database_url=postgres_schema.url,
                                       redis_url=require_redis(), redis_prefix=redis_prefix))
    builder: Client = await aiohttp_client(create_app(settings, clock))
    writer: Client = await aiohttp_client(create_app(settings, clock))  # another process, same storage
    response = await builder.put("/boards/b", headers=auth("boards:write"), json={"title": "b", "periods": ["all"]})
    assert response.status == 200
    await _inc(writer, "u1")
    await writer.app[SCOREBOARD].announced()
    await _built(builder, "b", "all")
    assert ("b", "all") not in writer.app[LIVE].board.watched()  # its store holds the pair's rows back
    await _inc(writer, "u2")
    await _inc(writer, "u1")
    await writer.app[SCOREBOARD].announced()
    assert ("b", "all") in writer.app[LIVE].board.watched()
    await _same_as_the_database(builder, "b", "all", ["u1", "u2"])
