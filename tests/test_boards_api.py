"""Boards over HTTP on every backend pair: management, scopes, reads per board and period."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.web import create_app
from tests.conftest import auth, eventually

Client = TestClient[Any, Any]
BOARDS = "boards:write"


class FakeClock:
    """The service's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, clock: FakeClock) -> Client:
    made: Client = await aiohttp_client(create_app(settings, clock))
    return made


async def _put(client: Client, board_id: str, body: dict[str, Any], scope: str = BOARDS) -> Any:
    return await client.put(f"/boards/{board_id}", json=body, headers=auth(scope))


async def _inc(client: Client, user: str, action: str = "complete") -> None:
    body = {"userId": user, "actionId": uuid.uuid4().hex, "action": action}
    response = await client.post("/scores/increment", json=body, headers=auth())
    assert response.status == 200, await response.text()


async def _top(client: Client, board_id: str, query: str = "") -> tuple[int, Any]:
    response = await client.get(f"/boards/{board_id}/top{query}")
    return response.status, await response.json()


def _scores(body: Any) -> list[tuple[str, int]]:
    return [(e["userId"], e["score"]) for e in body["entries"]]


async def test_boards_are_listed_created_replaced_and_deleted(client: Client) -> None:
    listed = await (await client.get("/boards")).json()
    assert listed == {"boards": [
        {"id": "main", "title": "Scoreboard", "actions": None, "periods": ["all"], "timeZone": "UTC"}]}
    response = await _put(client, "weekly", {"title": "This week", "periods": ["weekly", "all"],
                                             "timeZone": "Europe/Paris", "actions": ["complete"]})
    assert response.status == 200
    assert await response.json() == {"id": "weekly", "title": "This week", "actions": ["complete"],
                                     "periods": ["all", "weekly"], "timeZone": "Europe/Paris"}
    response = await _put(client, "weekly", {"title": "Week"})  # replaced whole: defaults for the rest
    assert (await response.json())["periods"] == ["all"]
    assert [b["id"] for b in (await (await client.get("/boards")).json())["boards"]] == ["main", "weekly"]
    assert (await client.delete("/boards/weekly", headers=auth(BOARDS))).status == 204
    assert (await client.delete("/boards/weekly", headers=auth(BOARDS))).status == 404
    assert (await _top(client, "weekly"))[0] == 404


async def test_board_writes_need_the_scope_and_main_stays(client: Client) -> None:
    assert (await client.put("/boards/b", json={"title": "B"})).status == 401
    assert (await _put(client, "b", {"title": "B"}, scope="scores:write")).status == 403
    assert (await client.delete("/boards/b", headers=auth("scores:write"))).status == 403
    response = await client.delete("/boards/main", headers=auth(BOARDS))
    assert response.status == 400 and (await response.json())["error"]["code"] == "VALIDATION_FAILED"
    response = await _put(client, "main", {"title": "Main", "periods": ["all", "daily"], "timeZone": "Asia/Tokyo"})
    assert response.status == 200  # changed, not deleted
    response = await _put(client, "main", {"title": "Main", "periods": ["daily"]})
    assert response.status == 400


@pytest.mark.parametrize(("board_id", "body", "field"), [
    ("b", {"title": "B", "actions": ["nope"]}, "actions"),
    ("b", {"title": "B", "periods": ["yearly"]}, "periods"),
    ("b", {"title": "B", "periods": []}, "periods"),
    ("b", {"title": "B", "timeZone": "Mars/Olympus"}, "timeZone"),
    ("b", {"title": ""}, "title"),
    ("b", {"title": "x" * 65}, "title"),
    ("b", {"title": "B", "extra": 1}, "extra"),
    ("Bad-Id", {"title": "B"}, "boardId"),
])
async def test_bad_boards_are_refused_with_the_field_named(client: Client, board_id: str, body: Any,
                                                           field: str) -> None:
    response = await _put(client, board_id, body)
    error = (await response.json())["error"]
    assert (response.status, error["code"]) == (400, "VALIDATION_FAILED")
    assert field in error["details"]["fields"]


async def test_increments_count_per_action_filter_and_period(settings: Settings,
                                                             aiohttp_client: Any, clock: FakeClock) -> None:
    from dataclasses import replace

    client: Client = await aiohttp_client(create_app(replace(settings, actions={"win": 25, "play": 1}), clock))
    await _put(client, "wins", {"title": "Wins", "actions": ["win"], "periods": ["all", "daily", "weekly", "monthly"]})
    await _inc(client, "ann", "win")
    await _inc(client, "bob", "play")
    await _inc(client, "bob", "win")
    for period, key in (("all", "all"), ("daily", "2026-11-25"), ("weekly", "2026-W48"), ("monthly", "2026-11")):
        status, body = await _top(client, "wins", f"?period={period}")
        assert status == 200
        assert (body["board"], body["period"], body["periodKey"]) == ("wins", period, key)
        assert _scores(body) == [("ann", 25), ("bob", 25)]
    response = await client.get("/boards/wins/scores/bob?period=weekly&around=1")
    body = await response.json()
    assert (body["score"], body["rank"], body["periodKey"]) == (25, 2, "2026-W48")
    assert [e["userId"] for e in body["around"]] == ["ann", "bob"]

    async def main_counts_everything() -> None:
        assert _scores((await _top(client, "main"))[1]) == [("bob", 26), ("ann", 25)]

    await eventually(main_counts_everything)


async def test_past_periods_stay_readable_and_future_ones_are_404(client: Client, clock: FakeClock) -> None:
    await _put(client, "b", {"title": "B", "periods": ["daily", "weekly"]})
    await _inc(client, "u1")
    clock.now += timedelta(days=7)
    await _inc(client, "u2")
    status, body = await _top(client, "b", "?period=weekly&at=2026-11-23")
    assert (status, body["periodKey"], _scores(body)) == (200, "2026-W48", [("u1", 10)])
    status, body = await _top(client, "b", "?period=weekly")
    assert (status, body["periodKey"], _scores(body)) == (200, "2026-W49", [("u2", 10)])
    assert (await _top(client, "b", "?period=daily&at=2026-11-25"))[1]["entries"][0]["userId"] == "u1"
    assert (await _top(client, "b", "?period=daily&at=2026-12-03"))[0] == 404  # tomorrow
    assert (await _top(client, "b", "?period=weekly&at=2026-12-06"))[0] == 200  # later this week: current
    assert (await _top(client, "b", "?period=monthly"))[0] == 404  # a period the board does not have
    assert (await _top(client, "nope"))[0] == 404
    assert (await _top(client, "b", "?period=yearly"))[0] == 400
    assert (await _top(client, "b", "?period=daily&at=yesterday"))[0] == 400
    missing = await client.get("/boards/b/scores/u2?period=daily&at=2026-11-25")
    assert missing.status == 404


async def test_etags_and_main_all_is_get_top(client: Client) -> None:
    await _put(client, "b", {"title": "B"})
    await _inc(client, "u1")
    response = await client.get("/boards/b/top")
    etag = response.headers["ETag"]
    again = await client.get("/boards/b/top", headers={"If-None-Match": etag})
    assert again.status == 304

    async def main_is_top() -> None:
        status, body = await _top(client, "main")
        top = await (await client.get("/top")).json()
        assert (status, body["entries"], body["periodKey"]) == (200, top["entries"], "all")

    await eventually(main_is_top)
    body = await (await client.get("/boards/main/scores/u1")).json()
    assert (body["score"], body["rank"], body["board"]) == (10, 1, "main")


async def test_a_deleted_user_leaves_every_board_at_once(client: Client) -> None:
    await _put(client, "b", {"title": "B", "periods": ["all", "daily", "weekly", "monthly"]})
    await _inc(client, "gone")
    await _inc(client, "stays")
    assert (await client.delete("/users/gone", headers=auth())).status == 204
    for period in ("all", "daily", "weekly", "monthly"):
        assert _scores((await _top(client, "b", f"?period={period}"))[1]) == [("stays", 10)]
        assert (await client.get(f"/boards/b/scores/gone?period={period}")).status == 404


async def test_a_replay_changes_nothing_on_any_board(client: Client, clock: FakeClock) -> None:
    await _put(client, "b", {"title": "B", "periods": ["all", "daily"]})
    body = {"userId": "u1", "actionId": "once"}
    for _ in range(2):
        assert (await client.post("/scores/increment", json=body, headers=auth())).status == 200
    clock.now += timedelta(days=1)
    replay = await client.post("/scores/increment", json=body, headers=auth())
    assert (await replay.json())["applied"] is False
    assert _scores((await _top(client, "b"))[1]) == [("u1", 10)]
    assert _scores((await _top(client, "b", "?period=daily&at=2026-11-25"))[1]) == [("u1", 10)]
    assert _scores((await _top(client, "b", "?period=daily"))[1]) == []


@pytest.mark.parametrize("title", ["\ud800", "tab\there", "\x7f"])
async def test_titles_with_control_characters_or_lone_surrogates_are_refused(client: Client, title: str) -> None:
    # json.dumps escapes to ASCII: a lone surrogate travels as \ud800, as a client could send it
    response = await client.put("/boards/b", data=json.dumps({"title": title}), headers={
        **auth(BOARDS), "Content-Type": "application/json"})
    assert response.status == 400
    assert "title" in (await response.json())["error"]["details"]["fields"]


def json_text(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body)  # ASCII escapes: a lone surrogate travels as \\ud800
