"""Every handler's frame: the request's id for every line it logs, and every failure as the
contract's error body and status.

It is not a middleware: aiohttp adds a layer of its own to every request once an application
has any middleware, so the URL table wraps each handler in `guarded` instead, and its last
route (`unrouted`) answers what the table lacks (404, 405 with Allow, CORS preflights). What is
recorded once the response is sent (access line, latency metric) is aiohttp's access-logger
hook: see app.ops.access.
"""
from __future__ import annotations

import errno
import functools
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from app import errors
from app.http.cors import preflight
from app.ops.logs import request_id, start_record

log = logging.getLogger(__name__)

# aiohttp's own refusals (body size) mapped to the contract's codes.
HTTP_ERRORS: dict[int, type[errors.AppError]] = {
    400: errors.ValidationFailed,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
}


def error_response(error: errors.AppError) -> web.Response:
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    response = web.json_response(body, status=error.status)
    if isinstance(error, errors.Unauthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="scoreboard"'
    if isinstance(error, errors.RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
        response.headers.update(error.headers)
    return response


def guarded(handler: Handler) -> Handler:
    """`handler` with the request id set for its lines and its failures answered as the contract says."""

    @functools.wraps(handler)
    async def guard(request: web.Request) -> web.StreamResponse:
        token = request_id.set(start_record(request).request_id)
        try:
            return await handler(request)
        except errors.AppError as error:
            return error_response(error)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(HTTP_ERRORS.get(exc.status, errors.InternalError)(exc.reason))
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # a file name too long
                return error_response(errors.NotFound("no such file"))
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(errors.InternalError("internal error"))
        finally:
            request_id.reset(token)

    guard.guarded = True  # type: ignore[attr-defined]  # tests check every route has it
    return guard


async def unrouted(request: web.Request) -> web.StreamResponse:
    """The URL table's last route, any method, any path: what no other route answers."""
    methods: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            _, allowed = await resource.resolve(request)
            methods |= allowed  # the methods of a route whose path matches
    answer = preflight(request, methods)
    if answer is not None:
        return answer
    if not methods:
        raise errors.NotFound("Not Found")
    response = error_response(errors.MethodNotAllowed("Method Not Allowed"))
    response.headers["Allow"] = ",".join(sorted(methods))
    return response
