"""The Procfile's entry: gunicorn's aiohttp worker calls `app()` once in each worker process."""
from __future__ import annotations

import os
import sys

from aiohttp import web

from app.config import ConfigError, Settings
from app.ops import logs
from app.ops.heap import tuned_for_serving
from app.web import create_app

WORKER_BOOT_ERROR = 3  # gunicorn's code for "stop the arbiter, do not respawn"


async def app() -> web.Application:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(WORKER_BOOT_ERROR)
    logs.configure(settings.log_format)
    return tuned_for_serving(create_app(settings))
