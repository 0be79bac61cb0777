"""GET /boards/{boardId}/stream: one (board, period) as Server-Sent Events, following the current period.

As GET /stream, with the pair's hub: the stream is admitted by the main registry (the caps, and
shutdown, count every stream) and joins the pair hub's registry, which pushes to it. The first
stream of a pair starts its hub; the last one to leave stops it.
"""
from __future__ import annotations

from aiohttp import web

from app.http.board_schemas import BoardStreamQuery
from app.http.boards import board_id
from app.http.handlers import _load
from app.http.hardening import client_address
from app.http.keys import BOARD_HUBS, BOARDS, HUB, SETTINGS
from app.http.stream import RETRY, _Response

_QUERY = BoardStreamQuery()


async def board_stream(request: web.Request) -> web.StreamResponse:
    target, period = board_id(request), _load(_QUERY, request.query)["period"]
    board, _ = await request.app[BOARDS].period_key(target, period, None)  # 404s before the headers
    settings, main = request.app[SETTINGS], request.app[HUB]
    last_seen = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    client = client_address(request, settings.trusted_proxies)
    with main.streams.admit(client) as place:
        async with request.app[BOARD_HUBS].watch(board, period) as hub:
            with hub.streams.admit(client) as pair_place:
                response = _Response(send_timeout=settings.send_timeout, ping_interval=settings.ping_interval)
                writer = await response.prepare(request)
                async with response:
                    snapshot = hub.snapshot
                    first = RETRY if last_seen == snapshot.version else RETRY + hub.snapshot_frame
                    try:
                        await response.write(first)
                    except ConnectionError:
                        return response
                    if request.transport is None:
                        return response
                    chunked = getattr(writer, "chunked", False)
                    place.attach(request.transport, chunked, response.stop_streaming)
                    pair_place.attach(request.transport, chunked, response.stop_streaming)
                    hub.streams.join(pair_place, snapshot.version, hub.snapshot.version)
                    await response.wait()
    return response
