"""Operations endpoints: liveness and readiness."""
from __future__ import annotations

from aiohttp import web

from app.errors import ServiceUnavailable
from app.keys import STORE


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE].ping()
    except ServiceUnavailable as exc:
        return web.json_response({"status": "unavailable", "failed": {"database": exc.message}}, status=503)
    return web.json_response({"status": "ready"})
