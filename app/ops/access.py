"""What is recorded of every request once its response is sent: the latency metric and the access line.

aiohttp calls this itself (an AbstractAccessLogger, set through the application's handler_args
in create_app), after the last byte is written, for every request whatever answered it: a
handler, the router's 404, a refused request line. No layer wraps the handler for it.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from app.ops import logs
from app.ops.metrics import Metrics, route_of


def access_log_args(metrics: Metrics) -> dict[str, Any]:
    """The handler_args that make aiohttp record every request into `metrics` and the access log."""

    class Recorded(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            route, status = route_of(request), response.status
            metrics.observe(request.method, route, status, time)
            record = logs.access_record(request)
            logs.log_access(request.method, route, status, time, record.request_id, record.sub, record.fields)

        @property
        def enabled(self) -> bool:
            return True  # the metrics need every request, whatever the log level

    return {"access_log_class": Recorded, "access_log": logs.access}
