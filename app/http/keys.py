"""Every application and request key, typed, so handlers get what they ask for.

The types are imported for the type checker only: a module that needs a key (the CORS or
logging layer, say) does not load the hub, the service and the stores with it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from app.auth.tokens import Verifier
    from app.board_hubs import BoardHubs
    from app.config import Settings
    from app.hub import Hub
    from app.leaderboards import Boards
    from app.live import Live
    from app.moderation import Moderation
    from app.ops.logs import AccessRecord
    from app.ops.metrics import Metrics
    from app.periods import Clock
    from app.ratelimit import RateLimiter
    from app.reconcile import Reconciler
    from app.service import Scoreboard
    from app.store import Database
    from app.tasks import Supervisor

SETTINGS: web.AppKey[Settings] = web.AppKey("scoreboard.settings")
STORE: web.AppKey[Database] = web.AppKey("scoreboard.store")
SCOREBOARD: web.AppKey[Scoreboard] = web.AppKey("scoreboard.scoreboard")
VERIFIER: web.AppKey[Verifier] = web.AppKey("scoreboard.verifier")
MODERATION: web.AppKey[Moderation] = web.AppKey("scoreboard.moderation")
LIMITER: web.AppKey[RateLimiter] = web.AppKey("scoreboard.limiter")  # its `fallbacks` count is for the metrics
HUB: web.AppKey[Hub] = web.AppKey("scoreboard.hub")
RECONCILER: web.AppKey[Reconciler] = web.AppKey("scoreboard.reconciler")
METRICS: web.AppKey[Metrics] = web.AppKey("scoreboard.metrics")
OPENAPI: web.AppKey[bytes] = web.AppKey("scoreboard.openapi")  # the document, encoded once at startup
LIVE: web.AppKey[Live] = web.AppKey("scoreboard.live")
BOARDS: web.AppKey[Boards] = web.AppKey("scoreboard.boards")
BOARD_HUBS: web.AppKey[BoardHubs] = web.AppKey("scoreboard.board_hubs")  # the watched (board, period) pairs
CLOCK: web.AppKey[Clock] = web.AppKey("scoreboard.clock")  # periods and the default `at`; tests inject one
SUPERVISOR: web.AppKey[Supervisor] = web.AppKey("scoreboard.supervisor")  # background tasks, for /readyz, /metrics
# Redis status for /readyz ("ok", "unavailable" or "not configured"): cached, no round trip.
REDIS_STATUS: web.AppKey[Callable[[], str]] = web.AppKey("scoreboard.redis_status")
# The request's id and what its access line says of it (app.ops.logs.AccessRecord).
ACCESS: web.RequestKey[AccessRecord] = web.RequestKey("scoreboard.access")
