"""Rate limits checked per batch: replays (even concurrent ones, even in one batch) use no quota, and
a request refused by one limit uses up neither its actionId nor the other limit."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from app.config import Settings
from tests.conftest import auth, clear_of_window_end


@pytest.fixture(autouse=True)
async def _clear_of_minute_end() -> None:
    """The limits here are per minute: no test's counts span a window's end."""
    await clear_of_window_end(60, 10)


async def _post(client: Any, user_id: str, action_id: str, sub: str = "game-1") -> tuple[int, Any]:
    response = await client.post("/scores/increment", json={"userId": user_id, "actionId": action_id},
                                 headers=auth(sub=sub))
    return response.status, await response.json()


async def test_replays_in_a_batch_use_no_quota(make_client: Any, settings: Settings) -> None:
    client = await make_client(replace(settings, rate_limit_user="2/minute", batch_window=0.05))
    assert (await _post(client, "u1", "a1"))[0] == 200
    replays = await asyncio.gather(*(_post(client, "u1", "a1") for _ in range(5)))
    assert [(status, body["applied"]) for status, body in replays] == [(200, False)] * 5
    assert (await _post(client, "u1", "a2"))[0] == 200  # the second of two: the replays took none
    assert (await _post(client, "u1", "a3"))[0] == 429


async def test_a_new_action_id_used_several_times_in_a_batch_counts_once(make_client: Any, settings: Settings) -> None:
    # With Redis each use is counted as it arrives, before the batch knows they repeat: the
    # later uses are replays, and their counts are taken back.
    client = await make_client(replace(settings, rate_limit_user="2/minute", batch_window=0.05))
    uses = await asyncio.gather(*(_post(client, "u1", "n1") for _ in range(5)))
    assert sorted((status, body["applied"]) for status, body in uses) == [(200, False)] * 4 + [(200, True)]
    assert (await _post(client, "u1", "n2"))[0] == 200  # the second of two
    assert (await _post(client, "u1", "n3"))[0] == 429


async def test_a_refusal_by_one_limit_uses_none_of_the_other(make_client: Any, settings: Settings) -> None:
    client = await make_client(replace(settings, rate_limit_user="2/minute", rate_limit_caller="1/minute"))
    assert (await _post(client, "u1", "a1"))[0] == 200
    status, body = await _post(client, "u1", "a2")  # the caller's limit refuses it
    assert (status, body["error"]["code"]) == (429, "RATE_LIMITED")
    assert (await _post(client, "u1", "a2", sub="game-2"))[0] == 200  # the user's second is still free
    assert (await _post(client, "u1", "a3", sub="game-3"))[0] == 429  # and now used
