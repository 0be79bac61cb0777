"""Redis killed and restarted under a running app (PostgreSQL + a private redis-server).

While Redis is away: increments commit (200), reads fall back to the database, the local stream
keeps pushing. When it returns: the read model is rebuilt by itself, and the totals add up.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg2
from redis.asyncio import Redis

from app.config import Settings
from tests.conftest import SECRET, MakeClient, PostgresSchema, auth, eventually
from tests.services import PrivateRedis
from tests.sse import SSEReader

USERS = [f"player{i}" for i in range(5)]
WAIT = 5.0
RECOVERY = 20.0  # generous: the bus reconnects with a backoff of up to 5 s



async def until_update(reader: SSEReader, expected: dict[str, int], within: float) -> None:
    """Read updates until one shows `expected` as the user -> score of its entries."""
    async with asyncio.timeout(within):
        while True:
            update = await reader.event(within)
            assert update.type == "update"
            if {e[1]: e[3] for e in update.entries()} == expected:
                return


def outage_settings(schema: PostgresSchema, server: PrivateRedis, prefix: str) -> Settings:
    return Settings(
        jwt_secret=SECRET, database_url=schema.url, redis_url=f"redis://127.0.0.1:{server.port}/0",
        redis_prefix=prefix, push_interval=0.05, ping_interval=1.0, db_timeout=5.0, reconcile_interval=1.0,
        rate_limit_user="10000/minute", rate_limit_caller="100000/minute",
    )


def database_rows(schema: PostgresSchema) -> tuple[dict[str, int], set[tuple[str, str, int]]]:
    """Straight from PostgreSQL: user -> score, and every score event as (user, action id, delta)."""
    conn = psycopg2.connect(schema.base_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT user_id, score FROM {schema.name}.users")
            users = {user_id: int(score) for user_id, score in cur.fetchall()}
            cur.execute(f"SELECT user_id, action_id, delta FROM {schema.name}.score_events")
            return users, {(user_id, action_id, int(delta)) for user_id, action_id, delta in cur.fetchall()}
    finally:
        conn.close()


async def test_redis_outage_and_recovery(make_client: MakeClient, postgres_schema: PostgresSchema,
                                         private_redis: PrivateRedis) -> None:
    prefix = f"outage:{uuid.uuid4().hex[:8]}:"
    settings = outage_settings(postgres_schema, private_redis, prefix)
    client = await make_client(settings)
    applied = 0
    action_ids: list[tuple[str, str]] = []

    async def increment(user_id: str) -> dict[str, Any]:
        nonlocal applied
        action_id = uuid.uuid4().hex
        response = await client.post("/scores/increment", json={"userId": user_id, "actionId": action_id},
                                     headers=auth())
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        assert body["applied"] is True
        applied += 1
        action_ids.append((user_id, action_id))
        return body

    async def scores() -> dict[str, int]:
        found = {}
        for user_id in USERS:
            response = await client.get(f"/scores/{user_id}")
            assert response.status == 200, await response.text()
            found[user_id] = (await response.json())["score"]
        return found

    for i in range(20):
        await increment(USERS[i % len(USERS)])

    async with client.get("/stream") as response:
        reader = SSEReader(response.content)
        assert (await reader.event(WAIT)).type == "snapshot"

        await private_redis.kill()
        for i in range(15):  # commits keep succeeding without Redis
            await increment(USERS[i % 3])
        expected = {u: 10 * sum(1 for who, _ in action_ids if who == u) for u in USERS}

        top = await client.get("/top")  # the hub's top 10 (current only once it hears of changes: see below)
        assert top.status == 200
        top_limit = await client.get("/top", params={"limit": "3"})  # not the hub's: the database's
        assert top_limit.status == 200
        assert [e["score"] for e in (await top_limit.json())["entries"]] == sorted(expected.values(),
                                                                                 reverse=True)[:3]
        assert await scores() == expected

        await private_redis.start()  # the same port, empty: everything must be rebuilt
        redis = Redis(port=private_redis.port)
        try:
            async def rebuilt() -> None:
                assert await redis.zcard(f"{prefix}board") == len(USERS)
                assert await redis.hlen(f"{prefix}members") == len(USERS)
                assert await scores() == expected

            await eventually(rebuilt, RECOVERY)
            # the repair is pushed: the stream shows everything committed while Redis was away
            await until_update(reader, expected, RECOVERY)
            # after recovery: more increments go to Redis again, and replays change nothing
            for i in range(10):
                await increment(USERS[i % len(USERS)])
            for user_id, action_id in action_ids[:5]:
                replay = await client.post("/scores/increment", json={"userId": user_id, "actionId": action_id},
                                           headers=auth())
                assert replay.status == 200
                assert (await replay.json())["applied"] is False
            expected = {u: 10 * sum(1 for who, _ in action_ids if who == u) for u in USERS}

            async def settled() -> None:
                assert await scores() == expected
                top = await (await client.get("/top", params={"limit": "50"})).json()  # the read model
                assert {e["userId"]: e["score"] for e in top["entries"]} == expected

            await eventually(settled, WAIT)
            members = await redis.hgetall(f"{prefix}members")
            assert len(members) == len(USERS)
        finally:
            await redis.aclose()

    users, events = database_rows(postgres_schema)
    assert users == expected == await scores()  # row by row: nothing lost, nothing counted twice
    assert events == {(user_id, action_id, 10) for user_id, action_id in action_ids}
    assert len(action_ids) == applied


async def test_the_local_stream_keeps_pushing_while_redis_is_down(
        make_client: MakeClient, postgres_schema: PostgresSchema, private_redis: PrivateRedis) -> None:
    client = await make_client(outage_settings(postgres_schema, private_redis, f"outage:{uuid.uuid4().hex[:8]}:"))
    async with client.get("/stream") as response:
        reader = SSEReader(response.content)
        assert (await reader.event(WAIT)).type == "snapshot"
        await private_redis.kill()
        body = {"userId": "alone", "actionId": uuid.uuid4().hex}
        assert (await client.post("/scores/increment", json=body, headers=auth())).status == 200
        await until_update(reader, {"alone": 10}, 3.0)  # at the push interval, not at Redis's return
        top = await (await client.get("/top")).json()
        assert [(e["userId"], e["score"]) for e in top["entries"]] == [("alone", 10)]
