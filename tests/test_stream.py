"""GET /stream read as a browser would (a real SSE parser), on both backend pairs.

Snapshot, Last-Event-ID both ways, update with ts, retry, pings, coalescing of a burst,
no push without a change, the STREAM_MAX cap, and a stalled reader that must not slow the others.
"""
from __future__ import annotations

import asyncio
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.http.keys import HUB
from app.web import create_app
from tests.conftest import MakeClient, auth, eventually, top_entries
from tests.sse import Block, SSEReader

WAIT = 5.0  # generous: how long a test waits for something that should come at once
Client = TestClient[Any, Any]


async def increment(client: Client, user_id: str) -> None:
    body = {"userId": user_id, "actionId": uuid.uuid4().hex}
    response = await client.post("/scores/increment", json=body, headers=auth())
    assert response.status == 200, await response.text()


async def rename(client: Client, user_id: str, name: str) -> None:
    response = await client.put(f"/users/{user_id}", json={"displayName": name}, headers=auth())
    assert response.status == 200, await response.text()


async def get_top(client: Client) -> dict[str, Any]:
    response = await client.get("/top")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def seed(client: Client, scores: dict[str, int]) -> dict[str, Any]:
    """Give each user `points` (a multiple of 10) and wait until GET /top shows all of it."""
    for user_id, points in scores.items():
        for _ in range(points // 10):
            await increment(client, user_id)
    expected = sorted(scores.values(), reverse=True)[:10]

    async def shown() -> None:
        assert [score for *_, score in await top_entries(client)] == expected

    await eventually(shown, WAIT)
    return await get_top(client)


@asynccontextmanager
async def stream(client: Client, headers: dict[str, str] | None = None,
                 params: dict[str, str] | None = None) -> AsyncIterator[SSEReader]:
    async with client.get("/stream", headers=headers, params=params) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield SSEReader(response.content)


async def next_update(reader: SSEReader, within: float = WAIT) -> Block:
    block = await reader.event(within)
    assert block.type == "update", block
    return block


async def test_first_event_is_the_snapshot_of_get_top(client: Client) -> None:
    top = await seed(client, {"a": 30, "b": 20, "c": 10})
    async with stream(client) as reader:
        first = await reader.event(WAIT)
        assert first.type == "snapshot"
        assert first.id == top["version"]
        body = first.json()
        assert body["entries"] == top["entries"]
        assert body["version"] == top["version"]
        assert "ts" not in body  # only updates are stamped
        # a retry hint came before it (its own block, which a browser does not dispatch)
        assert any(block.retry is not None and block.retry > 0 for block in reader.blocks[:-1])


@pytest.mark.parametrize("how", ["header", "query"])
async def test_last_event_id_equal_to_the_current_version_waits_for_the_next_change(
    client: Client, how: str
) -> None:
    top = await seed(client, {"a": 30, "b": 20})
    version = top["version"]
    headers, params = ({"Last-Event-ID": version}, None) if how == "header" else (None, {"lastEventId": version})
    async with stream(client, headers, params) as reader:
        # the headers came with the stream's first write, so the server has already chosen what to send;
        # the client has this state, so the next event must be the update of the change below, not a snapshot
        await increment(client, "b")
        update = await next_update(reader)
        assert update.id != version
        assert update.id == update.json()["version"]
        assert [(e[1], e[3]) for e in update.entries()] == [("a", 30), ("b", 30)]
        assert update.id == (await get_top(client))["version"]


@pytest.mark.parametrize("how", ["header", "query"])
async def test_another_last_event_id_gets_the_snapshot_at_once(client: Client, how: str) -> None:
    top = await seed(client, {"a": 30, "b": 20})
    stale = "not-" + top["version"]
    headers, params = ({"Last-Event-ID": stale}, None) if how == "header" else (None, {"lastEventId": stale})
    async with stream(client, headers, params) as reader:
        first = await reader.event(WAIT)
        assert (first.type, first.id) == ("snapshot", top["version"])
        assert first.json()["entries"] == top["entries"]


async def test_a_deleted_user_leaves_the_stream_at_once(client: Client) -> None:
    await seed(client, {"a": 30, "gone": 20})
    async with stream(client) as reader:
        assert (await reader.event(WAIT)).type == "snapshot"
        response = await client.delete("/users/gone", headers=auth())
        assert response.status == 204
        update = await next_update(reader)
        assert [e[1] for e in update.entries()] == ["a"]


async def test_an_update_carries_the_push_time(client: Client) -> None:
    await seed(client, {"a": 10})
    async with stream(client) as reader:
        assert (await reader.event(WAIT)).type == "snapshot"
        before = time.time() * 1000
        await increment(client, "a")
        update = await next_update(reader)
        after = time.time() * 1000
        ts = update.json()["ts"]
        assert isinstance(ts, int)
        assert before - 50 <= ts <= after + 50  # epoch milliseconds, stamped when the push was built


async def test_pings_arrive_while_idle(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(replace(settings, ping_interval=0.2))
    async with stream(client) as reader:
        assert (await reader.event(WAIT)).type == "snapshot"
        pings = 0
        deadline = asyncio.get_running_loop().time() + 1.1
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                block = await reader.block(left)
            except TimeoutError:
                break
            assert not block.is_event, block  # nothing changed: only comments
            pings += block.comments.count("ping")
        assert pings >= 3


async def test_a_burst_of_500_increments_is_coalesced(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(replace(settings, push_interval=0.25, rate_limit_user="100000/minute",
                                       rate_limit_caller="1000000/minute"))
    users = [f"burst{i:02d}" for i in range(15)]
    total = 500
    async with stream(client) as r1, stream(client) as r2, stream(client) as r3:
        readers = [r1, r2, r3]
        for reader in readers:
            assert (await reader.event(WAIT)).type == "snapshot"
        received: list[list[Block]] = [[] for _ in readers]
        collectors = [asyncio.create_task(_collect(r, into)) for r, into in zip(readers, received, strict=True)]
        await _paced_burst(client, users, total)
        scores = await _scores(client, users)
        expected = sorted(scores.values(), reverse=True)[:10]
        top: dict[str, Any] = {}

        async def every_stream_has_the_final_state() -> None:  # the trailing push carries it out
            top.update(await get_top(client))
            assert [e["score"] for e in top["entries"]] == expected
            for updates in received:
                assert updates and updates[-1].json()["entries"] == top["entries"]

        await eventually(every_stream_has_the_final_state, WAIT)
        for task in collectors:
            task.cancel()
        await asyncio.gather(*collectors, return_exceptions=True)

    assert sum(scores.values()) == 10 * total
    for updates in received:
        assert all(block.type == "update" for block in updates)
        # coalesced: a push carries many increments (a 0.25 s interval over a ~2 s burst gives about 10)
        assert 1 <= len(updates) <= total // 10, len(updates)
        stamps = [block.json()["ts"] for block in updates]
        assert stamps == sorted(stamps) and len({block.id for block in updates}) == len(updates)  # in order
        assert updates[-1].id == top["version"]  # newest state wins


async def _collect(reader: SSEReader, into: list[Block]) -> None:
    while True:
        into.append(await reader.event(3600))


async def _paced_burst(client: Client, users: list[str], total: int, spread: float = 1.9) -> None:
    """`total` increments at an even pace over `spread` seconds, each without waiting for the others."""
    loop, rng = asyncio.get_running_loop(), random.Random(3)
    started = loop.time()

    async def scheduled(at: float) -> None:
        await asyncio.sleep(max(0.0, started + at - loop.time()))  # the pace is the scenario, not a wait
        await increment(client, rng.choice(users))

    await asyncio.gather(*(scheduled(spread * i / total) for i in range(total)))


async def _scores(client: Client, users: list[str]) -> dict[str, int]:
    scores = {}
    for user_id in users:
        response = await client.get(f"/scores/{user_id}")
        scores[user_id] = (await response.json())["score"] if response.status == 200 else 0
    return scores


async def test_no_push_when_the_top_10_is_unchanged(client: Client) -> None:
    leaders = {f"lead{i}": 30 for i in range(10)}
    await seed(client, leaders)
    for user_id in leaders:
        await rename(client, user_id, f"name of {user_id}")
    await increment(client, "outsider")

    async def named() -> None:
        assert all(entry[2] is not None for entry in await top_entries(client))

    await eventually(named, WAIT)
    async with stream(client) as reader:
        assert (await reader.event(WAIT)).type == "snapshot"
        await increment(client, "outsider")  # 20 points: still below every leader
        await rename(client, "outsider", "somebody else")  # not shown in the top 10
        await rename(client, "lead3", "name of lead3")  # the same name again
        assert await client.app[HUB].refresh() is False  # read now, the top 10 is the one already pushed
        await increment(client, "lead3")  # a real change is pushed (the stream works)
        update = await next_update(reader)  # the first event after the snapshot: nothing was pushed before
        assert update.entries()[0][1:] == ("lead3", "name of lead3", 40)


async def test_stream_max_refuses_beyond_the_cap(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(replace(settings, stream_max=2))
    async with stream(client) as r1:
        assert (await r1.event(WAIT)).type == "snapshot"
        async with stream(client) as r2:
            assert (await r2.event(WAIT)).type == "snapshot"
            async with client.get("/stream") as refused:
                assert refused.status == 503
                body = await refused.json()
                assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
                assert set(body["error"]) >= {"code", "message", "details"}
        # the handler of the stream that left gives its place back

        async def freed() -> None:
            assert client.app[HUB].open_streams == 1

        await eventually(freed, WAIT)
        async with stream(client) as r3:
            assert (await r3.event(WAIT)).type == "snapshot"


STALL_HEADER = "X-Test-Stalled-Reader"


async def _small_server_buffer(request: web.Request, response: web.StreamResponse) -> None:
    """For the marked connection only: a small kernel send buffer (no autotuning to megabytes),
    so that a reader who stops reading blocks the server's writes after kilobytes, not megabytes."""
    if STALL_HEADER in request.headers and request.transport is not None:
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def _stalled_reader(port: int) -> socket.socket:
    """A raw connection that asks for /stream and then never reads a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: a small window
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{STALL_HEADER}: 1\r\n"
               "Accept: text/event-stream\r\n\r\n")
    await loop.sock_sendall(sock, request.encode())
    return sock


async def test_a_stalled_reader_does_not_delay_the_others(aiohttp_client: Any, settings: Settings) -> None:
    send_timeout = 3.0  # a push that waited for the stalled reader would be 3 s late
    app = create_app(replace(settings, push_interval=0.02, send_timeout=send_timeout, ping_interval=0.5))
    app.on_response_prepare.append(_small_server_buffer)
    client: Client = await aiohttp_client(app)
    hub = client.app[HUB]
    # long ids and names: every push is about 1.5 KB
    users = [f"{i}-" + "u" * 60 for i in range(10)]
    await seed(client, {user_id: 10 for user_id in users})
    assert client.port is not None
    async with stream(client) as reader:
        assert (await reader.event(WAIT)).type == "snapshot"
        stalled = await _stalled_reader(client.port)
        try:
            async def both_open() -> None:
                assert hub.open_streams == 2

            await eventually(both_open, WAIT)
            loop = asyncio.get_running_loop()
            started = loop.time()
            n = past_the_backlog = 0
            while hub.open_streams == 2:  # until the server cuts the stalled reader
                assert loop.time() - started < send_timeout + 20, "the stalled reader was never dropped"
                n += 1
                name = f"{n:05d}" + "n" * 27
                backed_up = hub.coalesced > 0  # the stalled stream already skips frames: its buffer is full
                await rename(client, users[n % 10], name)
                while name not in {entry[2] for entry in (await next_update(reader, WAIT)).entries()}:
                    pass
                past_the_backlog += backed_up and hub.open_streams == 2
            # the stall lasted the send timeout, and meanwhile pushes went on reaching the other reader
            # (a push that waited for the stalled reader would reach it only once the stalled one is cut)
            assert loop.time() - started >= send_timeout
            assert past_the_backlog >= 10, (n, past_the_backlog)  # about 130 here
            await rename(client, users[0], "after the stall")
            assert "after the stall" in {entry[2] for entry in (await next_update(reader, 2.0)).entries()}
        finally:
            stalled.close()
