"""GET /stream: the top 10 as Server-Sent Events (snapshot, then updates), via aiohttp-sse.

The handler sends the headers, the `retry` hint and the snapshot, then hands the socket to
the stream registry, which writes every later frame itself, and parks until the stream ends.
"""
from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

from app.http.hardening import client_address
from app.http.keys import HUB, SETTINGS
from app.snapshot import Snapshot
from app.streams import Stream, StreamRegistry

RETRY = b"retry: 2000\n\n"


class Watched(Protocol):
    """A hub as a stream sees it: the current snapshot (and its frame) and the registry that pushes."""

    snapshot: Snapshot
    snapshot_frame: bytes
    streams: StreamRegistry


class SSEResponse(EventSourceResponse):
    """aiohttp-sse's response without its ping task per stream: the registry pings every stream
    from one timer, so where aiohttp-sse starts a task this holds a plain future, which
    stop_streaming() cancels and wait() awaits as before (a task per stream is ~1 KB of RSS)."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        if request.method != "GET":
            raise web.HTTPMethodNotAllowed(request.method, ("GET",))
        self._set_tcp_user_timeout(request)
        writer = await web.StreamResponse.prepare(self, request)
        self._ping_task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
        self.enable_chunked_encoding()
        return writer


async def stream(request: web.Request) -> web.StreamResponse:
    hub, settings = request.app[HUB], request.app[SETTINGS]
    # Both caps refuse with a JSON error, before the stream's headers are sent.
    with hub.streams.admit(client_address(request, settings.trusted_proxies)) as place:
        return await serve(request, hub, place)


async def serve(request: web.Request, hub: Watched, place: Stream, *held: Stream) -> web.StreamResponse:
    """Send the headers, the `retry` hint and the hub's snapshot (not when Last-Event-ID already
    names it), hand the socket to the hub's registry through `place` (and to the registries of
    `held`, which count it and close it at shutdown), and park until the stream ends."""
    settings = request.app[SETTINGS]
    last_seen = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    response = SSEResponse(send_timeout=settings.send_timeout, ping_interval=settings.ping_interval)
    writer = await response.prepare(request)
    async with response:
        snapshot = hub.snapshot
        first = RETRY if last_seen == snapshot.version else RETRY + hub.snapshot_frame
        try:
            await response.write(first)  # with the headers, through aiohttp's own writer
        except ConnectionError:
            return response
        if request.transport is None:
            return response
        for stream in (place, *held):
            stream.attach(request.transport, getattr(writer, "chunked", False), response.stop_streaming)
        hub.streams.join(place, snapshot.version, hub.snapshot.version)
        await response.wait()
    return response
