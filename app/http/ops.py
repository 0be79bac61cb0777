"""Operations endpoints: liveness, readiness, metrics and the OpenAPI document."""
from __future__ import annotations

import os
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from app.errors import ServiceUnavailable
from app.http.keys import HUB, LIMITER, METRICS, OPENAPI, RECONCILER, REDIS_STATUS, SETTINGS, STORE, SUPERVISOR
from app.hub import STUCK_AFTER


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    """Ready while the database answers and the hub runs; Redis is reported (its cached status,
    no round trip), but its absence only degrades the service."""
    app, failed = request.app, {}
    redis = app[REDIS_STATUS]()
    try:
        await app[STORE].ping()
    except ServiceUnavailable as exc:
        failed["database"] = exc.message
    if (hub := _hub_problem(app)) is not None:
        failed["hub"] = hub
    if failed:
        return web.json_response({"status": "unavailable", "failed": failed, "redis": redis}, status=503)
    return web.json_response({"status": "ready", "redis": redis, "streams": _streams(app)})


def _streams(app: web.Application) -> dict[str, int]:
    """How many streams this process holds and may hold (STREAM_MAX, sized from the open-files limit)."""
    settings = app[SETTINGS]
    return {"open": app[HUB].open_streams, "max": settings.stream_max, "openFilesLimit": settings.open_files}


def _hub_problem(app: web.Application) -> str | None:
    """Why the hub is not pushing: it failed and has not refreshed since, or it stopped refreshing."""
    hub = app[HUB]
    failed_at, reason = app[SUPERVISOR].failures.get("hub", (float("-inf"), ""))
    if failed_at >= hub.refreshed_at:
        return f"failing: {reason}"
    idle = time.monotonic() - hub.refreshed_at
    return f"stuck: no refresh for {idle:.0f} s" if idle > STUCK_AFTER else None


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    app[METRICS].sample(app[HUB], app[RECONCILER], app[LIMITER], app[SUPERVISOR])
    return web.Response(body=app[METRICS].exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
