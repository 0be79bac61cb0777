"""GET /boards/{boardId}/stream: one (board, period) as Server-Sent Events, following the current period.

As GET /stream, with the pair's hub: the stream is admitted by the main registry (the caps, and
shutdown, count every stream) and joins the pair hub's registry, which pushes to it. The first
stream of a pair starts its hub; the last one to leave stops it.
"""
from __future__ import annotations

from aiohttp import web

from app.http.board_schemas import BoardStreamQuery
from app.http.boards import board_id
from app.http.hardening import client_address
from app.http.keys import BOARD_HUBS, BOARDS, HUB, SETTINGS
from app.http.parsing import load
from app.http.stream import serve

_QUERY = BoardStreamQuery()


async def board_stream(request: web.Request) -> web.StreamResponse:
    target, period = board_id(request), load(_QUERY, request.query)["period"]
    board, _ = await request.app[BOARDS].period_key(target, period, None)  # 404s before the headers
    settings, main = request.app[SETTINGS], request.app[HUB]
    client = client_address(request, settings.trusted_proxies)
    with main.streams.admit(client) as place:
        async with request.app[BOARD_HUBS].watch(board, period) as hub:
            with hub.streams.admit(client) as pair_place:
                return await serve(request, hub, pair_place, place)
