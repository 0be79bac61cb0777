"""create_app(settings): the access-log hook, the resource lifecycle chain and the routes."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from app.auth.tokens import Verifier
from app.board_hubs import BoardHubs, StreamSettings
from app.config import Settings
from app.errors import ServiceUnavailable
from app.http.hardening import HEADER_LIMITS, response_headers
from app.http.keys import (
    BOARD_HUBS,
    BOARDS,
    CLOCK,
    HUB,
    LIMITER,
    LIVE,
    METRICS,
    MODERATION,
    OPENAPI,
    RECONCILER,
    REDIS_STATUS,
    SCOREBOARD,
    SETTINGS,
    STORE,
    SUPERVISOR,
    VERIFIER,
)
from app.http.openapi import openapi_document
from app.http.routes import setup_routes
from app.hub import Hub, backstop
from app.leaderboards import Boards, PairModels
from app.live import open_live
from app.moderation import Moderation
from app.ops.access import access_log_args
from app.ops.metrics import Metrics
from app.pair_builds import PairBuilds
from app.periods import Clock, system_clock
from app.ratelimit import RateLimiter
from app.reconcile import Reconciler
from app.service import Scoreboard
from app.store import open_store
from app.store.migrations import migrate
from app.streams import StreamRegistry
from app.tasks import Supervisor

MAX_BODY_BYTES = 4096


def create_app(settings: Settings, clock: Clock = system_clock) -> web.Application:
    metrics = Metrics(settings.prometheus_multiproc_dir)
    # No middleware (aiohttp would add a layer of its own per request): the URL table guards
    # each handler. The access line and the latency metric are recorded by aiohttp after each
    # response is sent; these handler_args win over run_app's, gunicorn's and the test server's.
    app = web.Application(client_max_size=MAX_BODY_BYTES, handler_args={**HEADER_LIMITS, **access_log_args(metrics)})
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[METRICS] = metrics
    app[OPENAPI] = openapi_document(settings)
    app[VERIFIER] = Verifier(settings)
    app.on_response_prepare.append(response_headers(settings.cors_origins))
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
    async with open_live(settings.redis_url, settings.redis_prefix) as live:
        limiter = RateLimiter.open(live, settings.rate_limit_user, settings.rate_limit_caller)
        app[LIMITER] = limiter
        scoreboard = Scoreboard(app[STORE], live.board, live.bus, limiter, settings.actions, app[MODERATION],
                                live.freshness, batch_window=settings.batch_window, batch_max=settings.batch_max,
                                clock=app[CLOCK], pairs=live.pairs)
        app[SCOREBOARD] = scoreboard
        streams = StreamRegistry(settings.stream_max, settings.stream_max_per_client, settings.push_interval,
                                 settings.ping_interval, settings.send_timeout)
        app[HUB] = Hub(scoreboard.top, live.bus, streams, settings.push_interval)
        builds = PairBuilds(app[STORE], live.board, live.pairs, app[CLOCK])
        boards = app[BOARDS] = Boards(app[STORE], scoreboard.top, scoreboard.standing, app[CLOCK],
                                      PairModels(live.pairs, builds, live.freshness, scoreboard.announced))
        app[BOARD_HUBS] = BoardHubs(boards.top, live.bus, app[CLOCK], StreamSettings(
            settings.push_interval, settings.ping_interval, settings.send_timeout), boards.get)
        app[RECONCILER] = Reconciler(app[STORE], live, settings.reconcile_interval)
        app[REDIS_STATUS] = live.status
        app[LIVE] = live
        yield
        await app[BOARD_HUBS].close()
        await builds.close()
        await scoreboard.drain()  # batches still committing answer their callers before Redis closes


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The first top 10 before the first request, then every background task, supervised.

    The read model is repaired (or rebuilt) in the background: until it is complete, reads
    come from the database, so start-up does not wait for it.
    """
    hub, live, supervisor = app[HUB], app[LIVE], Supervisor()
    app[SUPERVISOR] = supervisor
    with contextlib.suppress(ServiceUnavailable):  # the database down at start: /readyz says so
        await hub.refresh()
    supervisor.start("reconciler", app[RECONCILER].run)
    supervisor.start("hub", hub.run)
    supervisor.start("hub-backstop", lambda: backstop(live.bus))
    supervisor.start("keep-alive", hub.streams.keep_alive)
    if live.watch is not None:
        supervisor.start("redis-health", live.watch)
    if app[SETTINGS].prometheus_multiproc_dir is not None:
        supervisor.start("metrics", lambda: app[METRICS].keep_sampling(hub, app[RECONCILER], app[LIMITER],
                                                                      supervisor))
    yield
    await supervisor.stop()


async def _stop_streams(app: web.Application) -> None:
    """On shutdown, end every open stream and wait for their handlers, instead of outliving the timeout."""
    await app[HUB].streams.close()


async def _close_metrics(app: web.Application) -> None:
    app[METRICS].close()
