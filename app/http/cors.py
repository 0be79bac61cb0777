"""CORS, closed by default: only the origins listed in CORS_ORIGINS are reflected, never `*`."""
from __future__ import annotations

from aiohttp import web

from app.http.keys import SETTINGS

ALLOW_HEADERS = "Authorization, Content-Type"
EXPOSE_HEADERS = "ETag, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
PREFLIGHT_MAX_AGE = "600"


def _listed_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    return origin if origin is not None and origin in request.app[SETTINGS].cors_origins else None


def preflight(request: web.Request, methods: set[str]) -> web.Response | None:
    """The answer to a listed origin's preflight for one of `methods` (those the path has);
    None for anything else (it is then a 405 or a 404). No route answers OPTIONS, so every
    preflight reaches the URL table's last route, which asks here."""
    requested = request.headers.get("Access-Control-Request-Method")
    if request.method != "OPTIONS" or requested is None or requested not in methods:
        return None
    if _listed_origin(request) is None:
        return None
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": ", ".join(sorted(methods)),
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
    })


def cors_headers(request: web.Request, response: web.StreamResponse, origins: tuple[str, ...]) -> None:
    """Part of the response-prepare step: reflect a listed origin; say the answer varies by Origin."""
    if not origins:
        return
    response.headers.add("Vary", "Origin")
    origin = _listed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
