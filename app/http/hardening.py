"""Hardening: HTTP header size limits, security response headers and a per-address cap on streams."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from app.errors import RateLimited

# Passed to aiohttp's parser as Application(handler_args=...), so tests run with them too.
# The longest legitimate line is a request line with a 64-character userId or a bearer
# token with a few claims; aiohttp answers 400 beyond these.
HEADER_LIMITS = {"max_line_size": 4096, "max_field_size": 8190, "max_headers": 64}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Every response, not only the page: an error body a browser renders gets it too.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
}
STREAM_RETRY_SECONDS = 5
UNKNOWN_ADDRESS = "unknown"


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for every response, streams and files included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


class StreamSlots:
    """At most `per_client` concurrent streams per client address, so one client cannot hold them all.

    The address is the peer's (`request.remote`): behind a proxy every client shares the
    proxy's address, so raise STREAM_MAX_PER_CLIENT there.
    """

    def __init__(self, per_client: int) -> None:
        self._per_client = per_client
        self._open: Counter[str] = Counter()

    @contextmanager
    def acquire(self, address: str | None) -> Iterator[None]:
        """Hold one of the address's slots for the block; RateLimited (429) when all are taken."""
        key = address or UNKNOWN_ADDRESS
        if self._open[key] >= self._per_client:
            raise RateLimited(f"at most {self._per_client} open streams per client address", STREAM_RETRY_SECONDS)
        self._open[key] += 1
        try:
            yield
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]  # bounded: only addresses with an open stream are kept

    def open_streams(self, address: str | None) -> int:
        return self._open[address or UNKNOWN_ADDRESS]
