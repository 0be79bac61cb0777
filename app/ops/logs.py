"""Logging: one JSON line per record (or text for humans), request ids, and the per-request access line.

Records are formatted and written by a thread (QueueHandler → QueueListener): the event loop
only hands them over, so a burst of requests never waits on stderr.
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import logging.handlers
import queue
import re
import secrets
import sys
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from app.http.keys import ACCESS_FIELDS, CALLER_SUB, REQUEST_ID
from app.ops.metrics import Metrics, route_of

access = logging.getLogger("app.access")
REQUEST_ID_HEADER = "X-Request-ID"
VALID_REQUEST_ID = re.compile(r"^[!-~]{1,64}\Z")  # short and printable: it is echoed and logged
# The request being served, so every line it causes (the audit line too) carries its id.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
EXTRAS = ("request", "audit")
FLUSH_INTERVAL = 0.05  # seconds a log line may wait before it is written
MAX_BATCH = 10_000  # lines per write: a burst is written in several
# Generated ids: a random per-process half and a counter, unique without a random draw per request.
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


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


class _AccessLine(NamedTuple):
    """An access line as the loop queues it: the LogRecord is made by the writer's thread."""

    created: float
    request_id: str | None
    fields: dict[str, Any]
    extra: dict[str, object]  # what a handler added for the line (ACCESS_FIELDS), e.g. an increment's audit

    def record(self) -> logging.LogRecord:
        fields = self.fields
        record = access.makeRecord(access.name, logging.INFO, "(access)", 0, "%s %s %d",
                                   (fields["method"], fields["route"], fields["status"]), None,
                                   extra={**self.extra, "request": fields, "requestId": self.request_id})
        record.created, record.msecs = self.created, (self.created % 1) * 1000
        return record


Queued = logging.LogRecord | _AccessLine
# Where the access line goes when configure() runs the writer; None: through `logging` (tests).
_access_queue: queue.SimpleQueue[Queued] | None = None


class _HandOver(logging.handlers.QueueHandler):
    """Queue the record as it is; the writer's thread formats it (the stdlib version formats here)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _BatchWriter(threading.Thread):
    """Formats and writes the queued records in batches, every FLUSH_INTERVAL.

    Waking per record (as QueueListener does) makes the loop and this thread trade the GIL
    on every request, which costs more than the formatting itself; one wake per batch does not.
    """

    def __init__(self, records: queue.SimpleQueue[Queued], handler: logging.StreamHandler[TextIO]) -> None:
        super().__init__(name="log-writer", daemon=True)
        self._records, self._handler = records, handler
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(FLUSH_INTERVAL):
            self.drain()
        self.drain()

    def drain(self) -> None:
        lines: list[str] = []
        with contextlib.suppress(queue.Empty):
            while len(lines) < MAX_BATCH:
                item = self._records.get_nowait()
                record = item.record() if isinstance(item, _AccessLine) else item
                if self._handler.filter(record):
                    lines.append(self._handler.format(record) + "\n")
        if lines:
            self._handler.stream.write("".join(lines))
            self._handler.flush()

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def chosen_format(log_format: str | None) -> str:
    """json or text: as configured, else text for a person at a terminal and JSON for a collector."""
    if log_format is not None:
        return log_format
    return "text" if sys.stderr.isatty() else "json"


def configure(log_format: str | None) -> None:
    """Send every record to stderr in `log_format` (see chosen_format), written off the event loop."""
    # What our lines never show, not gathered per record (the logging HOWTO's "Optimization"):
    # the caller's file and line (a stack walk per record), thread and process names.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen_format(log_format) == "json" else TextFormatter())
    global _access_queue
    records: queue.SimpleQueue[Queued] = queue.SimpleQueue()
    _access_queue = records
    hand_over = _HandOver(records)
    hand_over.addFilter(RequestIdFilter())  # on the loop's side: the request id is a context variable
    writer = _BatchWriter(records, handler)
    writer.start()
    atexit.register(writer.stop)  # writes what is queued before the process ends
    logging.basicConfig(level=logging.INFO, handlers=[hand_over], force=True)


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if given and VALID_REQUEST_ID.match(given):
        return given
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


def access_middleware(metrics: Metrics) -> Middleware:
    """Tag the request with an id (echoed in X-Request-ID), time it for the metrics, log one line."""

    @web.middleware
    async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[REQUEST_ID] = rid = _request_id(request)
        token = request_id.set(rid)
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
            seconds = time.perf_counter() - started
            route = route_of(request)
            metrics.observe(request.method, route, status, seconds)
            _log_access(request, route, status, seconds)
            request_id.reset(token)

    return observed


def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Part of the response-prepare step, so streams, files and error answers all carry the id."""
    if (rid := request.get(REQUEST_ID)) is not None:
        response.headers[REQUEST_ID_HEADER] = rid


def _log_access(request: web.Request, route: str, status: int, seconds: float) -> None:
    if not access.isEnabledFor(logging.INFO):
        return
    line = {"method": request.method, "route": route, "status": status,
            "latencyMs": round(seconds * 1000, 2), "sub": request.get(CALLER_SUB)}
    extra = request.get(ACCESS_FIELDS, {})
    if _access_queue is not None:  # the writer makes the record: one line per request, cheap here
        _access_queue.put(_AccessLine(time.time(), request_id.get(), line, extra))
        return
    access.info("%s %s %d", request.method, route, status, extra={**extra, "request": line})
