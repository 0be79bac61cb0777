"""The stream registry: caps, shutdown, one-pass fan-out with chunked framing, slow readers, client addresses."""
from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from app.config import Settings
from app.errors import RateLimited, ServiceUnavailable
from app.http.keys import HUB
from app.streams import HIGH_WATER, Frame, Stream, StreamRegistry
from tests.conftest import MakeClient

WAIT = 5.0


def registry(max_streams: int = 10, per_client: int = 3) -> StreamRegistry:
    return StreamRegistry(max_streams, per_client, interval=0.01, ping_interval=60, send_timeout=60)


def test_the_global_and_per_client_caps_are_domain_errors_and_places_come_back() -> None:
    streams = registry(max_streams=3, per_client=2)
    with streams.admit("10.0.0.1"), streams.admit("10.0.0.1"):
        with pytest.raises(RateLimited) as refused, streams.admit("10.0.0.1"):
            pass
        assert refused.value.retry_after > 0
        with streams.admit("10.0.0.2"):
            assert streams.open_streams("10.0.0.2") == 1
            with pytest.raises(ServiceUnavailable), streams.admit("10.0.0.3"):
                pass
        assert len(streams) == 2
    assert len(streams) == 0 and streams.open_streams("10.0.0.1") == 0


def test_a_place_is_given_back_when_the_stream_fails() -> None:
    streams = registry(per_client=1)
    with pytest.raises(ConnectionResetError), streams.admit("a"):
        raise ConnectionResetError
    with streams.admit("a"):
        assert streams.open_streams("a") == 1


@pytest.fixture
async def pair() -> AsyncIterator[tuple[asyncio.WriteTransport, socket.socket]]:
    """A real socket: the registry writes to its transport, the test reads (or not) the other end."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    theirs.setblocking(False)
    yield transport, theirs  # type: ignore[misc]
    transport.abort()
    theirs.close()


def received(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


async def test_one_frame_encoded_once_reaches_each_stream_in_its_framing(pair: Any) -> None:
    transport, theirs = pair
    plain_ours, plain_theirs = socket.socketpair()
    plain_theirs.setblocking(False)
    plain, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, plain_ours)
    streams = registry()
    try:
        await _both_framings(streams, transport, theirs, plain, plain_theirs)
    finally:
        plain.abort()
        plain_theirs.close()


async def _both_framings(streams: StreamRegistry, transport: Any, theirs: socket.socket, plain: Any,
                         plain_theirs: socket.socket) -> None:
    with streams.admit("a") as chunked_place, streams.admit("b") as plain_place:
        chunked_place.attach(transport, True, lambda: None)
        plain_place.attach(plain, False, lambda: None)
        streams.join(chunked_place, "v1", "v1")
        streams.join(plain_place, "v1", "v1")
        streams.push(Frame.of(b"event: update\ndata: {}\n\n"))
        await asyncio.sleep(0)
        assert received(theirs) == b"18\r\nevent: update\ndata: {}\n\n\r\n"
        assert received(plain_theirs) == b"event: update\ndata: {}\n\n"


async def test_a_stream_above_the_high_water_mark_is_skipped_then_gets_only_the_newest(pair: Any) -> None:
    transport, theirs = pair
    streams = registry()
    ended = asyncio.Event()
    async with _backed_up(streams, transport, ended):
        assert transport.get_write_buffer_size() > HIGH_WATER
        streams.push(Frame.of(b"data: 1\n\n"))
        streams.push(Frame.of(b"data: 2\n\n"))
        streams.push(Frame.of(b"data: 3\n\n"))
        assert streams.skipped == 2
        data = b""
        async with asyncio.timeout(WAIT):
            while not data.endswith(b"data: 3\n\n"):  # the reader drains the buffer
                data += received(theirs)
                await asyncio.sleep(0.01)
        assert b"data: 1" not in data and b"data: 2" not in data
        assert not ended.is_set()


async def test_a_stream_stalled_past_the_send_timeout_is_aborted_and_ended(pair: Any) -> None:
    transport, _ = pair
    streams = StreamRegistry(10, 3, interval=0.01, ping_interval=60, send_timeout=0.05)
    ended = asyncio.Event()
    async with _backed_up(streams, transport, ended):
        streams.push(Frame.of(b"data: 1\n\n"))
        await asyncio.wait_for(ended.wait(), WAIT)
        assert transport.is_closing()


@contextlib.asynccontextmanager
async def _backed_up(streams: StreamRegistry, transport: Any, ended: asyncio.Event) -> AsyncIterator[None]:
    """One joined stream whose reader has not read: its socket buffer is already past the mark."""
    keep_alive = asyncio.create_task(streams.keep_alive())
    try:
        with streams.admit("a") as place:
            place.attach(transport, False, ended.set)
            streams.join(place, "v0", "v0")
            transport.write(b"x" * (HIGH_WATER * 4))
            yield
    finally:
        keep_alive.cancel()


async def test_shutdown_ends_every_stream_then_waits_for_it() -> None:
    streams = registry()
    ended = asyncio.Event()
    left = asyncio.Event()

    async def handler() -> None:
        with streams.admit("a") as place:
            place.end = ended.set
            await ended.wait()
        left.set()

    task = asyncio.create_task(handler())
    await asyncio.sleep(0)
    await streams.close()
    assert left.is_set()
    with pytest.raises(ServiceUnavailable), streams.admit("b"):
        pass
    await task


async def _open(client: Any, forwarded_for: str) -> Any:
    return await client.get("/stream", headers={"X-Forwarded-For": forwarded_for})


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_cap(
        make_client: MakeClient, settings: Settings) -> None:
    trusted = Settings.from_env({"TRUSTED_PROXIES": "127.0.0.0/8, ::1"}).trusted_proxies
    client = await make_client(replace(settings, stream_max_per_client=1, trusted_proxies=trusted))
    first = await _open(client, "203.0.113.7")
    second = await _open(client, "198.51.100.1, 203.0.113.8")  # the proxy's nearest hop counts
    try:
        assert (first.status, second.status) == (200, 200)
        refused = await _open(client, "203.0.113.7")
        assert refused.status == 429
        assert client.app[HUB].streams.open_streams("203.0.113.8") == 1
    finally:
        first.close()
        second.close()


async def test_without_a_trusted_proxy_forwarded_for_is_ignored(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(replace(settings, stream_max_per_client=1))
    first = await _open(client, "203.0.113.7")
    try:
        refused = await _open(client, "203.0.113.9")  # a forged header buys no second place
        assert refused.status == 429
    finally:
        first.close()


async def test_http_1_0_streams_get_unchunked_frames(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(settings)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /stream HTTP/1.0\r\nHost: x\r\n\r\n")
    try:
        async with asyncio.timeout(WAIT):
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"Transfer-Encoding" not in head
            assert await reader.readuntil(b"\n\n") == b"retry: 2000\n\n"
            assert (await reader.readuntil(b"\n\n")).startswith(b"event: snapshot\nid: ")
    finally:
        writer.close()


async def test_a_pass_in_slices_reaches_every_stream_but_none_that_left_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.streams.SLICE", 2)
    streams = registry(per_client=10)
    joined: list[Stream] = []
    async with _readers(5, streams, joined) as readers:
        streams.push(Frame.of(b"data: 1\n\n"))  # the first slice at once, the others after
        got = [received(theirs) for theirs in readers]
        assert got.count(b"data: 1\n\n") == 2
        leaving = got.index(b"")
        streams._live.discard(joined[leaving])  # it leaves while the pass is under way
        for _ in range(5):
            await asyncio.sleep(0)
        got = [data + received(theirs) for data, theirs in zip(got, readers, strict=True)]
    assert got.count(b"data: 1\n\n") == 4 and got[leaving] == b""


@contextlib.asynccontextmanager
async def _readers(count: int, streams: StreamRegistry,
                   joined: list[Stream] | None = None) -> AsyncIterator[list[socket.socket]]:
    """`count` joined streams on real sockets (added to `joined` in order); yields the reading ends."""
    loop = asyncio.get_running_loop()
    pairs = [socket.socketpair() for _ in range(count)]
    transports = []
    try:
        with contextlib.ExitStack() as places:
            for ours, theirs in pairs:
                theirs.setblocking(False)
                transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
                transports.append(transport)
                place = places.enter_context(streams.admit("a"))
                place.attach(transport, False, lambda: None)
                streams.join(place, "v", "v")
                if joined is not None:
                    joined.append(place)
            yield [theirs for _, theirs in pairs]
    finally:
        for transport in transports:
            transport.abort()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


async def test_written_waits_until_the_pass_has_reached_every_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.streams.SLICE", 2)
    streams = registry(per_client=10)
    await streams.written()  # no pass: at once
    async with _readers(5, streams) as readers:
        streams.push(Frame.of(b"data: 1\n\n"))
        out = asyncio.ensure_future(streams.written())
        await asyncio.sleep(0)
        assert not out.done()  # the first slice is written, three streams are not
        await asyncio.wait_for(out, WAIT)
        assert [received(theirs) for theirs in readers] == [b"data: 1\n\n"] * 5


async def test_a_lagging_stream_that_got_a_push_is_owed_nothing() -> None:
    streams = StreamRegistry(10, 3, interval=0.25, ping_interval=60, send_timeout=60)
    async with _readers(1, streams) as [theirs]:
        streams.push(Frame.of(b"data: 1\n\n"))
        streams.push(Frame.of(b"data: 2\n\n"))  # within the interval: held back, owed
        assert streams.skipped == 0 and received(theirs) == b"data: 1\n\n"
        streams.last_push -= 1.0  # as if the interval had passed
        for stream in streams._live:
            stream.hold_until -= 1.0
        streams.push(Frame.of(b"data: 3\n\n"))
        streams.tick(streams.last_push + 10.0)  # idle long after: nothing is owed any more
        assert received(theirs) == b"data: 3\n\n"


async def test_while_pushes_flow_the_timer_neither_pings_nor_delivers_off_beat() -> None:
    streams = StreamRegistry(10, 3, interval=0.25, ping_interval=15, send_timeout=60)
    async with _readers(1, streams) as [theirs]:
        streams.push(Frame.of(b"data: 1\n\n"))
        streams.push(Frame.of(b"data: 2\n\n"))  # held back, owed
        received(theirs)
        for stream in streams._live:
            stream.hold_until -= 1.0  # its interval is over, but the next push is due any moment
        streams.tick(streams.last_push + 0.3)
        assert received(theirs) == b""
        streams.tick(streams.last_push + 0.6)  # two intervals without a push: the state stopped
        assert received(theirs) == b"data: 2\n\n"
        streams._next_ping = streams.last_push + 1.0
        streams.tick(streams.last_push + 1.0)  # a ping is due, but a push came within the ping interval
        assert received(theirs) == b""
        streams.tick(streams.last_push + 16.0)
        assert received(theirs) == b": ping\n\n"


async def test_a_pass_that_fails_does_not_hold_the_next_read_for_good() -> None:
    streams = registry()
    with streams.admit("a") as place:
        place.attach(_Broken(), False, lambda: None)  # type: ignore[arg-type]
        streams.join(place, "v", "v")
        with pytest.raises(RuntimeError):
            streams.push(Frame.of(b"data: 1\n\n"))
        await asyncio.wait_for(streams.written(), WAIT)


class _Broken:
    """A transport whose write fails as asyncio's does after write_eof()."""

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        raise RuntimeError("Cannot call write() after write_eof()")
