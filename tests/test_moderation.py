"""Anomaly flags (flag, or block until an operator clears) and paging through a user's audit log."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.http.keys import MODERATION
from tests.conftest import auth

Client = TestClient[Any, Any]
AUDITOR = "audit:read"


async def _post(client: Client, user_id: str, action_id: str, sub: str = "game-1") -> Any:
    body = {"userId": user_id, "actionId": action_id}
    return await client.post("/scores/increment", json=body, headers=auth(sub=sub))


async def _clear(client: Client, user_id: str, scope: str = "users:write") -> int:
    return (await client.delete(f"/users/{user_id}/flag", headers=auth(scope))).status


def _anomaly(settings: Settings, block: bool) -> Settings:
    return replace(settings, anomaly_points_per_hour=25, anomaly_block=block)  # complete=10: the 3rd trips it


async def test_block_refuses_a_flagged_user_until_the_flag_is_cleared(
        make_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    client = await make_client(_anomaly(settings, block=True))
    assert [(await _post(client, "u1", f"a{i}")).status for i in range(3)] == [200, 200, 200]
    assert "user flagged: 'u1' gained 30 points in the last hour (ceiling 25)" in caplog.text
    blocked = await _post(client, "u1", "a3")
    assert blocked.status == 403
    error = (await blocked.json())["error"]
    assert (error["code"], error["details"]["reason"]) == ("FORBIDDEN", "anomaly")
    replay = await _post(client, "u1", "a2")
    assert (replay.status, (await replay.json())["applied"]) == (200, False)
    assert (await _post(client, "u2", "b0")).status == 200  # only the flagged user is blocked
    assert client.app[MODERATION].flags_raised == 1

    assert await _clear(client, "u1", scope="users:delete") == 403
    assert await _clear(client, "u1") == 204
    assert await _clear(client, "u1") == 404
    # The refused actionId was not used up, and the window restarts at the clear.
    assert (await (await _post(client, "u1", "a3")).json())["newScore"] == 40
    assert [(await _post(client, "u1", f"c{i}")).status for i in range(3)] == [200, 200, 403]
    assert client.app[MODERATION].flags_raised == 2


async def test_flag_mode_flags_but_lets_increments_through(make_client: Any, settings: Settings) -> None:
    client = await make_client(_anomaly(settings, block=False))
    assert [(await _post(client, "u1", f"a{i}")).status for i in range(5)] == [200] * 5
    assert client.app[MODERATION].flags_raised == 1  # raised once, not on every later increment
    assert await _clear(client, "u1") == 204


async def test_no_ceiling_no_flags(make_client: Any, settings: Settings) -> None:
    client = await make_client(replace(settings, anomaly_block=True))
    assert [(await _post(client, "u1", f"a{i}")).status for i in range(5)] == [200] * 5
    assert await _clear(client, "u1") == 404
    assert await _clear(client, "nobody") == 404


async def _events(client: Client, user_id: str, query: str = "", scope: str = AUDITOR) -> Any:
    return await client.get(f"/users/{user_id}/events{query}", headers=auth(scope))


async def test_events_page_newest_first(make_client: Any, settings: Settings) -> None:
    client = await make_client(settings)
    for i in range(5):
        assert (await _post(client, "u1", f"a{i}", sub=f"game-{i % 2}")).status == 200
    await _post(client, "u2", "other")
    seen, cursor, pages = [], "", 0
    while cursor is not None:
        body = await (await _events(client, "u1", f"?limit=2&cursor={cursor}" if cursor else "?limit=2")).json()
        seen += body["events"]
        cursor, pages = body["nextCursor"], pages + 1
    assert pages == 3
    assert [e["actionId"] for e in seen] == ["a4", "a3", "a2", "a1", "a0"]
    assert [e["scoreAfter"] for e in seen] == [50, 40, 30, 20, 10]
    newest = seen[0]
    assert (newest["action"], newest["delta"], newest["caller"]) == ("complete", 10, "game-0")
    at = datetime.fromisoformat(newest["at"])
    assert newest["at"].endswith("Z") and abs(datetime.now(UTC) - at) < timedelta(minutes=1)
    assert len((await (await _events(client, "u1")).json())["events"]) == 5  # default limit 20


async def test_events_outlive_the_user_and_need_the_scope(make_client: Any, settings: Settings) -> None:
    client = await make_client(settings)
    await _post(client, "u1", "a0")
    assert (await client.delete("/users/u1", headers=auth())).status == 204
    body = await (await _events(client, "u1")).json()
    assert (body["nextCursor"], [e["actionId"] for e in body["events"]]) == (None, ["a0"])
    assert (await _events(client, "nobody")).status == 404
    assert (await _events(client, "u1", scope="users:write")).status == 403
    assert (await client.get("/users/u1/events")).status == 401


@pytest.mark.parametrize("query", [
    "?cursor=", "?cursor=zzz", "?cursor=!!", "?cursor=-1", "?cursor=1.5", "?cursor=%201", "?cursor=1" + "0" * 18,
    "?cursor=MQ==", "?limit=0", "?limit=101", "?limit=x",
])
async def test_bad_cursor_or_limit_is_400(make_client: Any, settings: Settings, query: str) -> None:
    client = await make_client(settings)
    await _post(client, "u1", "a0")
    response = await _events(client, "u1", query)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert set(error["details"]["fields"]) <= {"cursor", "limit"}
