"""Logging: one JSON line per record (or text for humans), request ids, and the per-request access line."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from app.http.keys import AUDIT, CALLER_SUB, REQUEST_ID
from app.ops.metrics import route_of

access = logging.getLogger("app.access")
REQUEST_ID_HEADER = "X-Request-ID"
VALID_REQUEST_ID = re.compile(r"^[!-~]{1,64}\Z")  # short and printable: it is echoed and logged
# The request being served, so every line it causes (the audit line too) carries its id.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
EXTRAS = ("request", "audit")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        if (current := getattr(record, "requestId", None)) is not None:
            line["requestId"] = current
        line.update({name: getattr(record, name) for name in EXTRAS if hasattr(record, name)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request being served, when it is made."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.requestId = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = {name: getattr(record, name) for name in EXTRAS if hasattr(record, name)}
        pairs = " ".join(f"{key}={value}" for extra in fields.values() for key, value in extra.items())
        return f"{super().format(record)} {pairs}".rstrip()


def configure(log_format: str | None) -> None:
    """Send every record to stderr in `log_format`: json, text, or (None) text for a person at a
    terminal and JSON for a log collector."""
    if log_format is None:
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if VALID_REQUEST_ID.match(given) else uuid.uuid4().hex


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tag the request with an id (echoed in X-Request-ID) and log one line when it ends."""
    request[REQUEST_ID] = _request_id(request)
    token = request_id.set(request[REQUEST_ID])
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects pass through the error middleware
        status = exc.status
        raise
    finally:
        _log_access(request, status, time.perf_counter() - started)
        request_id.reset(token)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare, so streams, files and error answers all carry the id."""
    if REQUEST_ID in request:
        response.headers[REQUEST_ID_HEADER] = request[REQUEST_ID]


def _log_access(request: web.Request, status: int, seconds: float) -> None:
    line = {"method": request.method, "route": route_of(request), "status": status,
            "latencyMs": round(seconds * 1000, 2), "sub": request.get(CALLER_SUB)}
    audit = request.get(AUDIT)
    extra = {"request": line} if audit is None else {"request": line, "audit": audit}
    access.info("%s %s %d", request.method, line["route"], status, extra=extra)
