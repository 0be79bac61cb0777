"""A snapshot's answer as bytes made once per version: status, headers and body in one write.

Every reader of a version gets the same response but for the Date, X-Request-ID and Connection
lines. Building a web.Response per request (a header multidict, the response-prepare signal,
every header serialised again) cost GET /top more CPU than aiohttp's own request handling
(py-spy, 2026-12-03). A PrebuiltResponse writes one joined bytes object through the request's
writer instead. It sends the headers web.Response and the app's response-prepare step send
(tests/test_prebuilt.py compares the two).
"""
from __future__ import annotations

import functools

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time  # aiohttp's own Date value, made once a second
from aiohttp.http import SERVER_SOFTWARE

from app.http.hardening import SECURITY_HEADERS
from app.http.parsing import etag_matches
from app.ops.logs import REQUEST_ID_HEADER, access_record
from app.snapshot import Snapshot

_CACHE_CONTROL = "no-cache"


class PrebuiltResponse(web.StreamResponse):
    """Sends `head` (headers after the status line, made once) and `body`, adding per request only
    the status line's version and the Date, X-Request-ID and Connection lines."""

    def __init__(self, status: int, head: bytes, body: bytes = b"") -> None:
        super().__init__(status=status)
        self._head, self._payload = head, body
        self._sent = False
        self._stays_open = False

    @property
    def keep_alive(self) -> bool:  # what aiohttp asks once the response is written
        return self._stays_open

    @property
    def prepared(self) -> bool:
        return self._sent

    async def prepare(self, request: web.BaseRequest) -> None:
        if self._sent:
            return
        self._sent = True
        version, self._stays_open = request.version, request.keep_alive
        # As aiohttp's own responses say it: close on HTTP/1.1, keep-alive on HTTP/1.0.
        if version >= (1, 1):
            connection = b"" if self._stays_open else b"Connection: close\r\n"
        else:
            connection = b"Connection: keep-alive\r\n" if self._stays_open else b""
        await request.writer.write_eof(b"".join((
            b"HTTP/%d.%d %d %s\r\n" % (version.major, version.minor, self.status, self.reason.encode()),
            self._head, b"Date: ", rfc822_formatted_time().encode(), b"\r\n",
            REQUEST_ID_HEADER.encode(), b": ", access_record(request).request_id.encode(), b"\r\n", connection, b"\r\n",
            self._payload,
        )))

    async def write_eof(self, data: bytes = b"") -> None:
        """Everything went out in prepare."""


def snapshot_answer(request: web.Request, snapshot: Snapshot, cors: bool) -> web.StreamResponse:
    """200 with the snapshot's body, or 304 when If-None-Match names its ETag. With CORS origins
    configured (`cors`), the response-prepare step adds headers per Origin: aiohttp builds those."""
    fresh = "If-None-Match" in request.headers and etag_matches(request, snapshot.etag)
    if cors:
        headers = {"ETag": snapshot.etag, "Cache-Control": _CACHE_CONTROL}
        if fresh:
            return web.Response(status=304, headers=headers)
        return web.Response(body=snapshot.encoded, headers={**headers, "Content-Type": "application/json"})
    if fresh:
        return PrebuiltResponse(304, _heads(snapshot.etag, len(snapshot.encoded))[1])
    return PrebuiltResponse(200, _heads(snapshot.etag, len(snapshot.encoded))[0], snapshot.encoded)


@functools.lru_cache(maxsize=64)
def _heads(etag: str, length: int) -> tuple[bytes, bytes]:
    """The 200's and the 304's headers for one version, but for the per-request lines."""
    common = {"ETag": etag, "Cache-Control": _CACHE_CONTROL}
    ok = {**common, "Content-Type": "application/json", "Content-Length": str(length)}
    tail = {"Server": SERVER_SOFTWARE, **SECURITY_HEADERS}
    return _lines({**ok, **tail}), _lines({**common, **tail})


def _lines(headers: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()
