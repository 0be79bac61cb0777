"""create_app(settings): middlewares, the resource lifecycle chain and the routes."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from app.auth.tokens import Verifier
from app.config import Settings
from app.http.cors import cors_preflight
from app.http.hardening import HEADER_LIMITS, response_headers
from app.http.keys import (
    HUB,
    LIMITER,
    METRICS,
    MODERATION,
    OPENAPI,
    RECONCILER,
    REDIS_STATUS,
    SCOREBOARD,
    SETTINGS,
    STORE,
    VERIFIER,
)
from app.http.middlewares import error_middleware
from app.http.openapi import openapi_document
from app.http.routes import setup_routes
from app.hub import Hub
from app.live import LiveUnavailable, open_live
from app.moderation import Moderation
from app.ops.logs import access_middleware
from app.ops.metrics import Metrics
from app.ratelimit import RateLimiter
from app.reconcile import Reconciler
from app.service import Scoreboard
from app.store import open_store
from app.store.migrations import migrate
from app.streams import StreamRegistry
from app.tasks import stop

if TYPE_CHECKING:
    import redis.asyncio

MAX_BODY_BYTES = 4096


def create_app(settings: Settings) -> web.Application:
    metrics = Metrics(settings.prometheus_multiproc_dir)
    middlewares = [access_middleware(metrics), error_middleware]
    if settings.cors_origins:  # without a listed origin no preflight is answered: no layer per request
        middlewares.append(cors_preflight)
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES, handler_args=HEADER_LIMITS)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[OPENAPI] = openapi_document(settings)
    app[VERIFIER] = Verifier(settings)
    app.on_response_prepare.append(response_headers)
    # Entered in order, exited in reverse, each only if its start succeeded.
    app.cleanup_ctx.extend([_keys, _store, _live, _background])
    app.on_shutdown.append(_stop_streams)
    app.on_cleanup.append(_close_metrics)
    setup_routes(app)
    return app


async def _keys(app: web.Application) -> AsyncIterator[None]:
    """A JWKS URL's keys: fetched before the first request, then refreshed in the background."""
    async with app[VERIFIER].refreshing():
        yield


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.auto_migrate:
        await asyncio.to_thread(migrate, settings.database_url)
    async with open_store(settings.database_url, settings.db_timeout) as store:
        app[STORE] = store
        app[MODERATION] = Moderation(store, settings.anomaly_points_per_hour, settings.anomaly_block)
        yield


async def _live(app: web.Application) -> AsyncIterator[None]:
    """Redis (or in-process) read model, bus and limits, and what is built on them."""
    settings = app[SETTINGS]
    redis = _redis_client(settings.redis_url)
    try:
        board, bus = open_live(redis, settings.redis_prefix)
        limiter = RateLimiter.open(redis, settings.redis_prefix, settings.rate_limit_user, settings.rate_limit_caller)
        app[LIMITER] = limiter
        scoreboard = Scoreboard(app[STORE], board, bus, limiter, settings.actions, app[MODERATION])
        app[SCOREBOARD] = scoreboard
        streams = StreamRegistry(settings.stream_max, settings.stream_max_per_client, settings.push_interval,
                                 settings.ping_interval, settings.send_timeout)
        app[HUB] = Hub(scoreboard.top, bus, streams, settings.push_interval)
        app[RECONCILER] = Reconciler(app[STORE], board, bus, settings.reconcile_interval)
        app[REDIS_STATUS] = _redis_status(redis)
        yield
    finally:
        if redis is not None:
            await redis.aclose()


async def _background(app: web.Application) -> AsyncIterator[None]:
    """A current read model and top 10 before the first request, then the debouncer and reconciler."""
    hub, reconciler = app[HUB], app[RECONCILER]
    with contextlib.suppress(LiveUnavailable):  # Redis down at start: reads use the database
        await reconciler.reconcile()
    await hub.refresh()
    tasks = [asyncio.create_task(hub.run(), name="hub"), asyncio.create_task(reconciler.run(), name="reconciler"),
             asyncio.create_task(hub.streams.keep_alive(), name="keep-alive")]
    if app[SETTINGS].prometheus_multiproc_dir is not None:
        sampling = app[METRICS].keep_sampling(hub, reconciler, app[LIMITER])
        tasks.append(asyncio.create_task(sampling, name="metrics"))
    yield
    for task in tasks:
        await stop(task)


async def _stop_streams(app: web.Application) -> None:
    """On shutdown, end every open stream and wait for their handlers, instead of outliving the timeout."""
    await app[HUB].streams.close()


async def _close_metrics(app: web.Application) -> None:
    app[METRICS].close()


def _redis_status(redis: redis.asyncio.Redis | None) -> Callable[[], Awaitable[str]]:
    async def status() -> str:
        if redis is None:
            return "not configured"
        from redis.exceptions import RedisError

        try:
            await redis.ping()
        except (RedisError, OSError):
            return "unavailable"
        return "ok"

    return status


def _redis_client(url: str | None) -> redis.asyncio.Redis | None:
    if url is None:
        return None
    import redis.asyncio  # only when configured: the embedded mode never needs it
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    # Short timeouts and one retry: a Redis outage must degrade requests, not stall them.
    return redis.asyncio.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=1, max_connections=64,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1), health_check_interval=15,
    )
