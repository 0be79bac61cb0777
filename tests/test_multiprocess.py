"""Two app processes sharing PostgreSQL and Redis: an increment through one reaches the other's stream."""
from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SECRET, PostgresSchema, auth, eventually
from tests.servers import Server
from tests.services import require_redis
from tests.sse import SSEReader

WAIT = 10.0


@pytest.fixture
async def two_apps(postgres_schema: PostgresSchema, redis_prefix: str, tmp_path: Path) -> AsyncIterator[
        tuple[Server, Server]]:
    env = {
        **os.environ, "DATABASE_URL": postgres_schema.url, "REDIS_URL": require_redis(), "REDIS_PREFIX": redis_prefix,
        "JWT_SECRET": SECRET, "PUSH_INTERVAL": "0.05",
    }
    a, b = Server(env, tmp_path / "a.log"), Server(env, tmp_path / "b.log")
    try:
        await a.start_async(within=30)  # the first applies the migrations; the second finds them applied
        await b.start_async(within=30)
        yield a, b
    finally:
        await a.stop_async()
        await b.stop_async()


async def test_an_increment_through_one_process_reaches_the_others_stream(
        two_apps: tuple[Server, Server]) -> None:
    a, b = two_apps
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{b.url}/stream") as stream:
            assert stream.status == 200
            reader = SSEReader(stream.content)
            snapshot = await reader.event(WAIT)
            assert snapshot.type == "snapshot"
            assert snapshot.json()["entries"] == []
            body = {"userId": "across", "actionId": uuid.uuid4().hex}
            async with session.post(f"{a.url}/scores/increment", json=body, headers=auth()) as response:
                assert response.status == 200, await response.text()
            update = await reader.event(WAIT)
            assert update.type == "update"
            assert [(e[1], e[3]) for e in update.entries()] == [("across", 10)]

        async def same_version() -> None:  # each /top catches up at its own push interval
            async with session.get(f"{a.url}/top") as top_a, session.get(f"{b.url}/top") as top_b:
                assert (await top_a.json())["version"] == (await top_b.json())["version"] == update.id

        # both processes compute the same version for the same state
        await eventually(same_version, WAIT)
