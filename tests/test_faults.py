"""Every Redis fault and a PostgreSQL cut, under load: nothing lost or doubled, no 5xx but 503,
no 404 for a committed user, no read or push going back, and the read model repaired after.

make_client comes last in each signature: the apps then stop before the schema is dropped.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import uuid
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.config import Settings
from app.domain import Entry
from app.live.redis import RedisBoard
from tests.conftest import SECRET, MakeClient, PostgresSchema, auth, eventually
from tests.faults import Load
from tests.services import PrivateRedis, free_port
from tests.tcp_proxy import TcpProxy

SEEDED = 20_000


async def _seed(schema: PostgresSchema, server: PrivateRedis, prefix: str, users: int) -> None:
    """Idle users below the players, by SQL; wait until the read model has them all."""
    schema.execute(f"INSERT INTO {schema.name}.users (user_id, score) "
                   f"SELECT 'idle' || g, -1 FROM generate_series(1, {users}) AS g")
    redis = Redis(port=server.port)
    try:
        async with asyncio.timeout(30):
            while await redis.zcard(f"{prefix}board") < users:  # noqa: ASYNC110 - the board is the signal
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


# A script that holds Redis until SCRIPT KILL (it writes nothing, so it can be killed).
HOLD = "while true do end"


def fault_settings(database_url: str, server: PrivateRedis) -> Settings:
    return Settings(
        jwt_secret=SECRET, database_url=database_url, redis_url=f"redis://127.0.0.1:{server.port}/0",
        redis_prefix=f"fault:{uuid.uuid4().hex[:8]}:", push_interval=0.05, ping_interval=1.0, db_timeout=2.0,
        reconcile_interval=1.0, rate_limit_user="100000/minute", rate_limit_caller="1000000/minute",
    )


async def test_redis_killed_and_restarted_empty(postgres_schema: PostgresSchema, private_redis: PrivateRedis,
                                                make_client: MakeClient) -> None:
    settings = fault_settings(postgres_schema.url, private_redis)
    # two processes: one takes the increments, the other (which sees no failed write) serves the reads
    client, reader = await make_client(settings), await make_client(settings)
    await _seed(postgres_schema, private_redis, settings.redis_prefix, SEEDED)  # a rebuild that takes a while
    async with Load(client, reader) as load:
        await private_redis.kill()
        await load.until_committed(30)
        await private_redis.start()  # the same port, empty
        await load.until_committed(60)
    await load.settle_and_check(postgres_schema)
    assert load.committed_but_503 == 0
    assert 503 not in load.statuses  # Redis is optional: no increment failed


async def test_a_script_holding_redis_busy(postgres_schema: PostgresSchema, private_redis: PrivateRedis,
                                           make_client: MakeClient) -> None:
    client = await make_client(fault_settings(postgres_schema.url, private_redis))
    admin = Redis(port=private_redis.port)
    holder = Redis(port=private_redis.port)
    try:
        await admin.config_set("busy-reply-threshold", 50)  # BUSY replies after 50 ms, not 5 s
        async with Load(client) as load:
            hold = asyncio.create_task(holder.eval(HOLD, 0))
            await _until_busy(admin)
            await load.until_committed(30)
            await admin.script_kill()
            with contextlib.suppress(ResponseError):
                await hold
            await load.until_committed(60)
        await load.settle_and_check(postgres_schema)
        assert 503 not in load.statuses
    finally:
        await admin.aclose()
        await holder.aclose()


async def _until_busy(admin: Redis) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                await admin.ping()
            except ResponseError as exc:
                assert str(exc).startswith("BUSY")
                return


async def test_a_read_only_replica_after_a_failover(postgres_schema: PostgresSchema, private_redis: PrivateRedis,
                                                     make_client: MakeClient) -> None:
    client = await make_client(fault_settings(postgres_schema.url, private_redis))
    admin = Redis(port=private_redis.port)
    try:
        async with Load(client) as load:
            await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # a master that is gone
            await load.until_committed(40)  # every board write answers READONLY meanwhile
            await admin.execute_command("REPLICAOF", "NO", "ONE")
            await load.until_committed(40)
        await load.settle_and_check(postgres_schema)
        assert 503 not in load.statuses
    finally:
        await admin.aclose()


# A connection cut inside a transaction leaves aiopg's Transaction object unclosed; it warns when
# collected. Not a leak of ours (the connection is gone, PostgreSQL rolled back).
@pytest.mark.filterwarnings("ignore:You have not closed transaction:ResourceWarning",
                            "ignore::pytest.PytestUnraisableExceptionWarning")
async def test_postgres_cut_mid_load(postgres_schema: PostgresSchema, private_redis: PrivateRedis, proxy: TcpProxy,
                                     make_client: MakeClient) -> None:
    url = urlsplit(postgres_schema.url)
    via_proxy = url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}").geturl()
    client = await make_client(fault_settings(via_proxy, private_redis))
    async with Load(client) as load:
        await proxy.stop()
        await load.until(503, 10)
        await proxy.start()
        await load.until_committed(40)
    await load.settle_and_check(postgres_schema)
    gc.collect()  # the warnings above, here rather than in a later test
    print(f"\npostgres cut: {load.committed} committed, answers {dict(load.statuses)}, "
          f"committed but answered 503 first: {load.committed_but_503}")


async def test_a_delete_and_a_rename_reach_reads_and_the_board_when_its_write_fails(
        postgres_schema: PostgresSchema, private_redis: PrivateRedis, make_client: MakeClient) -> None:
    settings = fault_settings(postgres_schema.url, private_redis)
    client = await make_client(settings)
    admin = Redis(port=private_redis.port, decode_responses=True)
    try:
        for user in ("gone", "kept"):
            assert (await client.put(f"/users/{user}", json={"displayName": "old"}, headers=auth())).status == 200
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # every board write fails
        assert (await client.delete("/users/gone", headers=auth())).status == 204
        renamed = await client.put("/users/kept", json={"displayName": "new"}, headers=auth())
        assert (renamed.status, (await renamed.json())["displayName"]) == (200, "new")
        assert (await client.get("/scores/gone")).status == 404  # at once, though the board still has them
        assert (await (await client.get("/scores/kept")).json())["displayName"] == "new"
        top = await (await client.get("/top", params={"limit": "50"})).json()
        assert [(e["userId"], e["displayName"]) for e in top["entries"]] == [("kept", "new")]
        await admin.execute_command("REPLICAOF", "NO", "ONE")

        async def repaired() -> None:  # the repair applied both from the change feed
            assert await admin.hget(f"{settings.redis_prefix}members", "gone") == "deleted"
            assert (await admin.hget(f"{settings.redis_prefix}names", "kept") or "").endswith("+new")

        await eventually(repaired, 30)
    finally:
        await admin.aclose()


async def test_a_board_without_its_mark_is_never_read(postgres_schema: PostgresSchema,
                                                      private_redis: PrivateRedis, make_client: MakeClient) -> None:
    """Redis restarted empty and a write landed before the rebuild: a partial board, no mark.
    Reads must come from the database (a wrong score, a 404, a short top otherwise), every time."""
    settings = dataclasses.replace(fault_settings(postgres_schema.url, private_redis), reconcile_interval=3600.0)
    client = await make_client(settings)  # no periodic pass: only the mark check guards the reads
    for user, points in (("a", 3), ("b", 2), ("c", 1)):
        for n in range(points):
            body = {"userId": user, "actionId": f"{user}{n}"}
            assert (await client.post("/scores/increment", json=body, headers=auth())).status == 200
    admin = Redis(port=private_redis.port)
    try:
        await eventually(lambda: _has_mark(admin, settings.redis_prefix), 30)  # the start-up rebuild ended
        await admin.flushall()
        await RedisBoard(admin, settings.redis_prefix).upsert([Entry("c", None, 99, 2**40)])  # partial, wrong
        for _ in range(3):
            scores = [await (await client.get(f"/scores/{user}")).json() for user in ("a", "b", "c")]
            assert [(s["userId"], s["score"], s["rank"]) for s in scores] == [("a", 30, 1), ("b", 20, 2), ("c", 10, 3)]
            top = await (await client.get("/top", params={"limit": "50"})).json()
            assert [(t["userId"], t["score"]) for t in top["entries"]] == [("a", 30), ("b", 20), ("c", 10)]
        assert await admin.exists(f"{settings.redis_prefix}mark") == 0  # nothing rebuilt it meanwhile
    finally:
        await admin.aclose()


async def _has_mark(admin: Redis, prefix: str) -> None:
    assert await admin.exists(f"{prefix}mark")
