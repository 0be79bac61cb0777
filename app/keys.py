"""Every application key: typed, so handlers get what they ask for."""
from __future__ import annotations

from aiohttp import web

from app.auth import Verifier
from app.config import Settings
from app.service import Scoreboard
from app.store import Store

SETTINGS = web.AppKey("scoreboard.settings", Settings)
STORE = web.AppKey("scoreboard.store", Store)
SCOREBOARD = web.AppKey("scoreboard.scoreboard", Scoreboard)
VERIFIER = web.AppKey("scoreboard.verifier", Verifier)
