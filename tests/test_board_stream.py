"""GET /boards/{id}/stream on every backend pair: snapshot, updates, Last-Event-ID, coalescing,
hubs only for watched pairs, and a period boundary crossed during the test (injected clock)."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.http.keys import BOARD_HUBS
from app.web import create_app
from tests.conftest import auth, eventually
from tests.sse import SSEReader
from tests.test_boards_api import FakeClock

WAIT = 5.0
Client = TestClient[Any, Any]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 25, 23, 59, 0, tzinfo=UTC))


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, clock: FakeClock) -> Client:
    made: Client = await aiohttp_client(create_app(settings, clock))
    response = await made.put("/boards/b", json={"title": "B", "periods": ["all", "daily"]},
                              headers=auth("boards:write"))
    assert response.status == 200
    return made


async def _inc(client: Client, user: str) -> None:
    body = {"userId": user, "actionId": uuid.uuid4().hex}
    assert (await client.post("/scores/increment", json=body, headers=auth())).status == 200


@asynccontextmanager
async def _stream(client: Client, query: str = "?period=daily",
                  headers: dict[str, str] | None = None) -> AsyncIterator[SSEReader]:
    async with client.get(f"/boards/b/stream{query}", headers=headers) as response:
        assert response.status == 200, await response.text()
        yield SSEReader(response.content)


def _scores(body: Any) -> list[tuple[str, int]]:
    return [(e["userId"], e["score"]) for e in body["entries"]]


async def test_snapshot_then_updates_with_the_board_fields(client: Client) -> None:
    await _inc(client, "u1")
    async with _stream(client) as reader:
        first = await reader.event(WAIT)
        assert first.type == "snapshot"
        body = first.json()
        assert (body["board"], body["period"], body["periodKey"], _scores(body)) == (
            "b", "daily", "2026-11-25", [("u1", 10)])
        top = await (await client.get("/boards/b/top?period=daily")).json()
        assert top["version"] == first.id  # served from the watched pair's hub
        await _inc(client, "u2")
        await _inc(client, "u2")
        update = await reader.event(WAIT)
        assert update.type == "update" and "ts" in update.json()
        if _scores(update.json()) != [("u2", 20), ("u1", 10)]:  # the burst may span two pushes
            update = await reader.event(WAIT)
        assert _scores(update.json()) == [("u2", 20), ("u1", 10)]


async def test_last_event_id_equal_to_the_current_version_gets_no_snapshot(client: Client) -> None:
    await _inc(client, "u1")
    version = (await (await client.get("/boards/b/top?period=daily")).json())["version"]
    async with _stream(client, headers={"Last-Event-ID": version}) as reader:
        await _inc(client, "u1")
        block = await reader.event(WAIT)
        assert block.type == "update" and _scores(block.json()) == [("u1", 20)]


async def test_unknown_boards_and_periods_are_404_before_the_stream(client: Client) -> None:
    assert (await client.get("/boards/nope/stream")).status == 404
    assert (await client.get("/boards/b/stream?period=weekly")).status == 404
    assert (await client.get("/boards/b/stream?period=yearly")).status == 400


async def test_a_hub_runs_only_while_its_pair_is_watched(client: Client) -> None:
    hubs = client.app[BOARD_HUBS]
    assert hubs.watched("b", "daily") is None
    async with _stream(client) as first, _stream(client) as second:
        await first.event(WAIT)
        await second.event(WAIT)
        assert hubs.watched("b", "daily") is not None
        assert hubs.watched("b", "all") is None  # not watched: not computed, not pushed

    async def dropped() -> None:
        assert hubs.watched("b", "daily") is None

    await eventually(dropped, WAIT)


async def test_a_stream_follows_the_period_final_update_then_the_new_snapshot(client: Client,
                                                                             clock: FakeClock) -> None:
    await _inc(client, "u1")
    async with _stream(client) as reader:
        assert (await reader.event(WAIT)).json()["periodKey"] == "2026-11-25"
        await _inc(client, "u2")  # the last increment of the day
        clock.now += timedelta(minutes=2)  # midnight passes
        events = []
        while not events or events[-1].type != "snapshot":
            events.append(await reader.event(WAIT))
        final, fresh = events[-2], events[-1]
        assert final.type == "update"
        assert (final.json()["periodKey"], _scores(final.json())) == ("2026-11-25", [("u1", 10), ("u2", 10)])
        assert (fresh.json()["periodKey"], _scores(fresh.json())) == ("2026-11-26", [])
        await _inc(client, "u3")
        update = await reader.event(WAIT)
        assert (update.type, update.json()["periodKey"], _scores(update.json())) == (
            "update", "2026-11-26", [("u3", 10)])
    past = await (await client.get("/boards/b/top?period=daily&at=2026-11-25")).json()
    assert _scores(past) == [("u1", 10), ("u2", 10)]
    all_time = await (await client.get("/boards/b/top")).json()
    assert _scores(all_time) == [("u1", 10), ("u2", 10), ("u3", 10)]


async def test_main_all_through_the_board_stream(client: Client) -> None:
    await _inc(client, "u1")

    async def shown() -> None:
        assert _scores(await (await client.get("/top")).json()) == [("u1", 10)]

    await eventually(shown, WAIT)
    async with client.get("/boards/main/stream") as response:
        reader = SSEReader(response.content)
        first = await reader.event(WAIT)
        body = first.json()
        assert (body["board"], body["periodKey"], _scores(body)) == ("main", "all", [("u1", 10)])


async def test_a_deleted_user_leaves_a_watched_board_at_once(client: Client) -> None:
    await _inc(client, "gone")
    await _inc(client, "stays")
    async with _stream(client) as reader:
        assert _scores((await reader.event(WAIT)).json()) == [("gone", 10), ("stays", 10)]
        assert (await client.delete("/users/gone", headers=auth())).status == 204
        update = await reader.event(WAIT)
        assert (update.type, _scores(update.json())) == ("update", [("stays", 10)])
        assert _scores(await (await client.get("/boards/b/top?period=daily")).json()) == [("stays", 10)]
