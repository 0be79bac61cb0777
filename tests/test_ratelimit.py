"""Rate limits: 429 with Retry-After and RateLimit-*, replays never refused, one budget across
processes through Redis, and process-local counters while Redis is down."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.http.keys import LIMITER
from tests.conftest import SECRET, PostgresSchema, auth, clear_of_window_end, eventually
from tests.services import require_redis
from tests.test_live_contract import PrivateRedis

Client = TestClient[Any, Any]


@pytest.fixture(autouse=True)
async def _clear_of_minute_end() -> None:
    """The limits here are per minute: no test's counts span a window's end."""
    await clear_of_window_end(60, 10)


async def _post(client: Client, user_id: str, action_id: str | None = None, sub: str = "game-1") -> Any:
    body = {"userId": user_id, "actionId": action_id or uuid4().hex}
    return await client.post("/scores/increment", json=body, headers=auth(sub=sub))


async def _statuses(client: Client, user_id: str, times: int) -> list[int]:
    return [(await _post(client, user_id)).status for _ in range(times)]


def _limits(settings: Settings, user: str = "1000/minute", caller: str = "100000/minute") -> Settings:
    return replace(settings, rate_limit_user=user, rate_limit_caller=caller)


async def test_user_limit_is_429_with_retry_after_and_ratelimit_fields(make_client: Any, settings: Settings) -> None:
    client = await make_client(_limits(settings, user="3/minute"))
    for remaining in (2, 1, 0):
        accepted = await _post(client, "u1")
        assert accepted.status == 200
        assert (accepted.headers["RateLimit-Limit"], accepted.headers["RateLimit-Remaining"]) == ("3", str(remaining))
        assert 0 <= int(accepted.headers["RateLimit-Reset"]) <= 60
    refused = await _post(client, "u1")
    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (refused.headers["RateLimit-Limit"], refused.headers["RateLimit-Remaining"]) == ("3", "0")
    assert (await _post(client, "u2")).status == 200  # each user has a budget of its own
    assert (await (await client.get("/scores/u1")).json())["score"] == 30


async def test_caller_limit_spans_users_and_headers_show_the_tighter_one(make_client: Any, settings: Settings) -> None:
    client = await make_client(_limits(settings, user="10/minute", caller="2/minute"))
    first = await _post(client, "u1")
    assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("2", "1")
    assert (await _post(client, "u2")).status == 200
    refused = await _post(client, "u3")
    assert refused.status == 429 and refused.headers["RateLimit-Limit"] == "2"
    assert (await _post(client, "u3", sub="game-2")).status == 200  # another caller is not affected


async def test_replay_of_an_applied_action_is_never_refused(make_client: Any, settings: Settings) -> None:
    client = await make_client(_limits(settings, user="1/minute"))
    assert (await _post(client, "u1", "first")).status == 200
    assert (await _post(client, "u1", "second")).status == 429
    for _ in range(3):
        replay = await _post(client, "u1", "first")
        assert replay.status == 200
        assert (await replay.json())["applied"] is False
        assert "RateLimit-Remaining" not in replay.headers  # nothing was counted


async def test_refused_request_does_not_use_up_its_action_id(make_client: Any, settings: Settings) -> None:
    client = await make_client(_limits(settings, user="1/second"))
    await clear_of_window_end(1, 0.5)
    assert (await _post(client, "u1", "first")).status == 200
    refused = await _post(client, "u1", "retried")
    assert refused.status == 429
    retried: list[Any] = []

    async def admitted() -> None:  # retried until the window frees room; each refusal must leave the id unused
        retried.append(await _post(client, "u1", "retried"))
        assert retried[-1].status == 200

    await eventually(admitted, within=int(refused.headers["Retry-After"]) + 5.0)
    assert (await retried[-1].json())["applied"] is True


async def test_two_instances_share_one_budget_through_redis(
        make_client: Any, postgres_schema: PostgresSchema, redis_prefix: str) -> None:
    settings = Settings(jwt_secret=SECRET, database_url=postgres_schema.url, redis_url=require_redis(),
                        redis_prefix=redis_prefix, rate_limit_user="4/minute")
    first, second = await make_client(settings), await make_client(settings)
    statuses = [(await _post(client, "u1")).status for client in (first, second) * 3]
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_embedded_instances_count_in_their_own_memory(make_client: Any, tmp_path: Path) -> None:
    base = Settings(jwt_secret=SECRET, rate_limit_user="2/minute")
    first = await make_client(replace(base, database_url=f"sqlite:///{tmp_path}/1.db"))
    second = await make_client(replace(base, database_url=f"sqlite:///{tmp_path}/2.db"))
    assert await _statuses(first, "u1", 3) == [200, 200, 429]
    assert await _statuses(second, "u1", 3) == [200, 200, 429]



async def test_limits_fall_back_to_this_process_while_redis_is_down(
        make_client: Any, tmp_path: Path, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(jwt_secret=SECRET, database_url=f"sqlite:///{tmp_path}/s.db", rate_limit_user="3/minute",
                        redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    client = await make_client(settings)
    limiter = client.app[LIMITER]
    assert await _statuses(client, "u1", 1) == [200]
    assert limiter.fallbacks == 0
    await private_redis.kill()
    # Writes go on: the local counters start empty and still enforce the limit.
    assert await _statuses(client, "u1", 4) == [200, 200, 200, 429]
    assert limiter.fallbacks > 0
    assert caplog.text.count("rate limits fall back to this process") == 1  # once per outage
    await private_redis.start()

    async def shared_again() -> None:  # once Redis answers and the breaker's pause is over
        assert (await _post(client, f"u-{uuid4().hex[:8]}")).status == 200  # a fresh user each try
        assert "rate limits are shared through Redis again" in caplog.text

    await eventually(shared_again, within=15)


async def test_a_refusal_names_the_limit_that_refused_it(make_client: Any, settings: Settings) -> None:
    """Clients (the demo among them) back off per user or for every user by `details.scope`."""
    client = await make_client(_limits(settings, user="1/minute", caller="2/minute"))
    assert (await _post(client, "u1")).status == 200
    by_user = await (await _post(client, "u1")).json()
    assert by_user["error"]["details"]["scope"] == "user"
    assert (await _post(client, "u2")).status == 200
    by_caller = await (await _post(client, "u3")).json()
    assert by_caller["error"]["details"]["scope"] == "caller"
