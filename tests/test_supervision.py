"""Background tasks survive any failure (restarted, counted, reported), and a blackholed Redis
costs one timeout per breaker pause instead of one per call."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.errors import RateLimited
from app.http.keys import HUB
from app.live import LiveUnavailable, open_live
from app.ratelimit import Quota, RateLimiter
from app.reconcile import RETRY, Reconciler
from app.store import open_store
from app.store.migrations import migrate
from app.tasks import stop
from tests.conftest import SECRET, MakeClient, auth, clear_of_window_end, eventually
from tests.services import free_port


async def _increment(client: TestClient[Any, Any]) -> None:
    body = {"userId": "u", "actionId": uuid.uuid4().hex}
    assert (await client.post("/scores/increment", json=body, headers=auth())).status == 200


async def test_a_failing_hub_is_restarted_counted_and_reported(make_client: MakeClient, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    client = await make_client(Settings(jwt_secret=SECRET, database_url=f"sqlite:///{tmp_path}/s.db",
                                        push_interval=0.05, rate_limit_user="100000/minute"))
    hub = client.server.app[HUB]

    def bug(snapshot: object) -> bool:
        raise RuntimeError("a bug in the hub")

    monkeypatch.setattr(hub, "publish", bug)  # every push the hub makes after a change

    async def reported() -> None:
        await _increment(client)  # a change the hub fails to read
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["failed"]["hub"] == "failing: RuntimeError: a bug in the hub"

    await eventually(reported, 10)
    assert 'scoreboard_task_restarts{task="hub"}' in await (await client.get("/metrics")).text()
    monkeypatch.undo()

    async def recovered() -> None:
        await _increment(client)  # the restarted hub hears it and refreshes
        assert (await client.get("/readyz")).status == 200
        assert [e["score"] for e in (await (await client.get("/top")).json())["entries"]] == [
            (await (await client.get("/scores/u")).json())["score"]]

    await eventually(recovered, 15)


@pytest.fixture
async def blackhole() -> AsyncIterator[list[int]]:
    """A TCP server that accepts and never answers; yields the count of connections it accepted."""
    accepted = [0]

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    accepted.append(server.sockets[0].getsockname()[1])
    try:
        yield accepted
    finally:
        server.close()


async def test_a_blackholed_redis_costs_one_timeout_per_pause(blackhole: list[int]) -> None:
    url = f"redis://127.0.0.1:{blackhole[1]}/0"
    async with open_live(url, f"test:{uuid.uuid4().hex}:") as live:
        assert live.status() == "ok"  # nothing tried yet
        for _ in range(20):
            with pytest.raises(LiveUnavailable):
                await live.board.top(10)
        with pytest.raises(LiveUnavailable):
            await live.bus.publish("changed")
        assert blackhole[0] == 1  # one connection waited out its timeout; every later call failed fast
        assert live.status() == "unavailable"


async def test_the_rate_limiter_shares_the_breaker(blackhole: list[int]) -> None:
    """Increments while Redis is blackholed pay one timeout per pause, not one per batch."""
    url = f"redis://127.0.0.1:{blackhole[1]}/0"
    async with open_live(url, f"test:{uuid.uuid4().hex}:") as live:
        limiter = RateLimiter.open(live, "2/minute", "100/minute")
        await clear_of_window_end(60, 10)
        answers = [await limiter.admit([("u1", "game-1")]) for _ in range(4)]
        assert [type(answer) for (answer,) in answers] == [Quota, Quota, RateLimited, RateLimited]  # local counts
        assert limiter.fallbacks == 4
        assert blackhole[0] == 1  # the first check waited out the timeout; the breaker answered the rest
        assert live.status() == "unavailable"


async def test_failed_writes_wake_the_reconciler_once_per_pause(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """During an outage every batch's failed board write wakes the repair: it tries again only
    after a pause, instead of once per batch."""
    url = f"sqlite:///{tmp_path}/s.db"
    migrate(url)
    async with open_store(url, 5.0) as store, open_live(f"redis://127.0.0.1:{free_port()}/0", "test:") as live:
        reconciler = asyncio.create_task(Reconciler(store, live, interval=60).run())
        began = time.monotonic()
        try:
            for _ in range(50):  # refused connections: every write fails at once
                live.freshness.write_failed()
                await asyncio.sleep(0.01)
        finally:
            elapsed = time.monotonic() - began
            await stop(reconciler)
    tries = [r for r in caplog.records if r.getMessage().startswith("read model not reconciled")]
    assert 1 <= len(tries) <= 1 + elapsed / RETRY
