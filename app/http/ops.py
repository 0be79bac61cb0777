"""Operations endpoints: liveness, readiness, metrics and the OpenAPI document."""
from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from app.errors import ServiceUnavailable
from app.http.keys import HUB, LIMITER, METRICS, OPENAPI, RECONCILER, REDIS_STATUS, SETTINGS, STORE


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    """Ready while the database answers; Redis is reported, but its absence only degrades the service."""
    redis = await request.app[REDIS_STATUS]()
    try:
        await request.app[STORE].ping()
    except ServiceUnavailable as exc:
        body = {"status": "unavailable", "failed": {"database": exc.message}, "redis": redis}
        return web.json_response(body, status=503)
    return web.json_response({"status": "ready", "redis": redis, "streams": _streams(request.app)})


def _streams(app: web.Application) -> dict[str, int]:
    """How many streams this process holds and may hold (STREAM_MAX, sized from the open-files limit)."""
    settings = app[SETTINGS]
    return {"open": app[HUB].open_streams, "max": settings.stream_max, "openFilesLimit": settings.open_files}


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    app[METRICS].sample(app[HUB], app[RECONCILER], app[LIMITER])
    return web.Response(body=app[METRICS].exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
