"""create_app(settings): middlewares, the resource lifecycle chain and the routes."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from app.auth import Verifier
from app.config import Settings
from app.keys import SCOREBOARD, SETTINGS, STORE, VERIFIER
from app.live import open_live
from app.middlewares import error_middleware
from app.ratelimit import RateLimiter
from app.routes import setup_routes
from app.service import Scoreboard
from app.store import open_store
from app.store.migrations import migrate

if TYPE_CHECKING:
    import redis.asyncio

MAX_BODY_BYTES = 4096


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[VERIFIER] = Verifier(settings)
    # Entered in order, exited in reverse, each only if its start succeeded.
    app.cleanup_ctx.extend([_store, _scoreboard])
    setup_routes(app)
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.auto_migrate:
        await asyncio.to_thread(migrate, settings.database_url)
    async with open_store(settings.database_url, settings.db_timeout) as store:
        app[STORE] = store
        yield


async def _scoreboard(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = _redis_client(settings.redis_url)
    try:
        board, bus = open_live(redis, settings.redis_prefix)
        limiter = RateLimiter.open(redis, settings.redis_prefix, settings.rate_limit_user, settings.rate_limit_caller)
        scoreboard = Scoreboard(app[STORE], board, bus, limiter, settings.actions)
        await scoreboard.rebuild()
        app[SCOREBOARD] = scoreboard
        yield
    finally:
        if redis is not None:
            await redis.aclose()


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
