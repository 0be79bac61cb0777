"""CORS, closed by default: only the origins listed in CORS_ORIGINS are reflected, never `*`."""
from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from app.http.keys import SETTINGS

ALLOW_HEADERS = "Authorization, Content-Type"
EXPOSE_HEADERS = "ETag, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
PREFLIGHT_MAX_AGE = "600"


def _listed_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    return origin if origin is not None and origin in request.app[SETTINGS].cors_origins else None


@web.middleware
async def cors_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a listed origin's preflight for a method the route has; all else goes on (405/404)."""
    requested = request.headers.get("Access-Control-Request-Method")
    if request.method != "OPTIONS" or requested is None or _listed_origin(request) is None:
        return await handler(request)
    # No route answers OPTIONS, so the router's 405 knows which methods the path has.
    refused = request.match_info.http_exception
    methods = refused.allowed_methods if isinstance(refused, web.HTTPMethodNotAllowed) else set()
    if requested not in methods:
        return await handler(request)
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
