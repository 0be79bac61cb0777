"""The one middleware: the request's id for every line its handler logs, and every failure as the
contract's error body and status. What is recorded once the response is sent (access line,
latency metric) is not a layer around the handler: see app.ops.access."""
from __future__ import annotations

import errno
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from app import errors
from app.ops.logs import request_id, request_id_of

log = logging.getLogger(__name__)

# aiohttp's own refusals (routing, body size) mapped to the contract's codes.
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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request_id.set(request_id_of(request))
    try:
        return await handler(request)
    except errors.AppError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = HTTP_ERRORS.get(exc.status, errors.InternalError)
        response = error_response(kind(exc.reason))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # escapes aiohttp's static files
            return error_response(errors.NotFound("no such file"))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(errors.InternalError("internal error"))
    finally:
        request_id.reset(token)
