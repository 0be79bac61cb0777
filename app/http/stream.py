"""GET /stream: the top 10 as Server-Sent Events (snapshot, then updates), via aiohttp-sse."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from app.http.keys import HUB, SETTINGS, STREAM_SLOTS, STREAMS
from app.hub import Slot

RETRY_MS = 2000


@dataclass
class _Client:
    request: web.Request
    response: EventSourceResponse
    send_timeout: float

    async def write(self, frame: bytes) -> None:
        """Write pre-encoded bytes (the same for every stream); cut a stalled client after the timeout."""
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.response.write(frame)
        except TimeoutError:
            self.response.stop_streaming()
            if self.request.transport is not None:
                self.request.transport.abort()  # a graceful close would wait on the stalled peer
            raise


async def stream(request: web.Request) -> web.StreamResponse:
    hub, settings = request.app[HUB], request.app[SETTINGS]
    last_seen = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    # Both caps refuse with a JSON error, before the stream's headers are sent.
    with request.app[STREAM_SLOTS].acquire(request.remote):
        async with hub.stream_slot() as slot, sse_response(
            request, ping_interval=settings.ping_interval, send_timeout=settings.send_timeout
        ) as response:
            request.app[STREAMS].add(response)
            client = _Client(request, response, settings.send_timeout)
            with contextlib.suppress(ConnectionError, TimeoutError):  # a gone or stalled client
                await client.write(f"retry: {RETRY_MS}\n\n".encode())
                if last_seen != hub.snapshot.version:
                    await client.write(hub.snapshot_frame)
                await _forward(slot, client)
    return response


async def _forward(slot: Slot, client: _Client) -> None:
    """Write each newest frame until the client leaves or the server stops the stream.

    aiohttp does not cancel a handler whose client left, so every wait races the response's end.
    """
    closed = asyncio.ensure_future(client.response.wait())
    try:
        while True:
            frame = asyncio.ensure_future(slot.take())
            await asyncio.wait((frame, closed), return_when=asyncio.FIRST_COMPLETED)
            if closed.done():
                frame.cancel()
                return
            await client.write(frame.result())
    finally:
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closed
