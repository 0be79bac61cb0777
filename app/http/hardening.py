"""Hardening: HTTP header size limits, security response headers and the client address behind proxies."""
from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from app.config import IPNetwork
from app.http.cors import cors_headers
from app.ops.logs import REQUEST_ID_HEADER, access_record

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
UNKNOWN_ADDRESS = "unknown"


def response_headers(cors_origins: tuple[str, ...]) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """The on_response_prepare step, for every response (streams, files and errors included):
    security headers, the request id and, only when origins are listed, CORS. One step, built
    once per app, since it runs on every request."""

    async def prepared(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.update(SECURITY_HEADERS)  # no handler sets these: one call for all of them
        headers[REQUEST_ID_HEADER] = access_record(request).request_id
        if cors_origins:
            cors_headers(request, response, cors_origins)

    return prepared


def client_address(request: web.Request, trusted_proxies: tuple[IPNetwork, ...]) -> str:
    """The viewer's address for the per-client stream cap.

    The peer's address, unless the peer is a configured trusted proxy: then the nearest
    address in X-Forwarded-For that is not a trusted proxy (the ones before it could be
    forged by the client). Behind a load balancer every viewer shares the balancer's address.
    """
    peer = request.remote or UNKNOWN_ADDRESS
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    hops = [hop.strip() for hop in ",".join(request.headers.getall("X-Forwarded-For", ())).split(",")]
    for hop in reversed(hops):
        if hop and not _trusted(hop, trusted_proxies):
            return hop
    return peer


def _trusted(address: str, trusted_proxies: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted_proxies)
