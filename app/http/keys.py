"""Every application key: typed, so handlers get what they ask for."""
from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from app.auth.tokens import Verifier
from app.config import Settings
from app.hub import Hub
from app.live import Live
from app.moderation import Moderation
from app.ops.metrics import Metrics
from app.ratelimit import RateLimiter
from app.reconcile import Reconciler
from app.service import Scoreboard
from app.store import Database
from app.tasks import Supervisor

SETTINGS = web.AppKey("scoreboard.settings", Settings)
STORE = web.AppKey("scoreboard.store", Database)
SCOREBOARD = web.AppKey("scoreboard.scoreboard", Scoreboard)
VERIFIER = web.AppKey("scoreboard.verifier", Verifier)
MODERATION = web.AppKey("scoreboard.moderation", Moderation)
LIMITER = web.AppKey("scoreboard.limiter", RateLimiter)  # its `fallbacks` count is for the metrics
HUB = web.AppKey("scoreboard.hub", Hub)
RECONCILER = web.AppKey("scoreboard.reconciler", Reconciler)
METRICS = web.AppKey("scoreboard.metrics", Metrics)
OPENAPI = web.AppKey("scoreboard.openapi", bytes)  # the document, encoded once at startup
# Redis status for /readyz: "ok", "unavailable" or "not configured".
REQUEST_ID = web.RequestKey("scoreboard.request_id", str)  # echoed in X-Request-ID
CALLER_SUB = web.RequestKey("scoreboard.caller_sub", str)  # for the access log, once authenticated
REDIS_STATUS: web.AppKey[Callable[[], str]] = web.AppKey("scoreboard.redis_status")  # cached, no round trip
LIVE = web.AppKey("scoreboard.live", Live)
SUPERVISOR = web.AppKey("scoreboard.supervisor", Supervisor)  # the background tasks, for /readyz and /metrics
# Extra top-level fields for this request's access-log line, such as an applied increment's "audit".
ACCESS_FIELDS: web.RequestKey[dict[str, object]] = web.RequestKey("scoreboard.access_fields")
