"""The OpenAPI 3 document: built once at startup from the marshmallow schemas, so it cannot drift."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from app import errors
from app.config import Settings
from app.http import schemas
from app.http.board_openapi import board_paths

JSON = "application/json"
ERRORS: tuple[type[errors.AppError], ...] = (
    errors.ValidationFailed, errors.Unauthenticated, errors.Forbidden, errors.NotFound, errors.IdempotencyConflict,
    errors.UserDeleted, errors.PayloadTooLarge, errors.UnsupportedMediaType, errors.RateLimited,
    errors.ServiceUnavailable, errors.InternalError,
)
AUTHED = (401, 403)
BODY = (400, 413, 415)
SSE_FORMAT = """Server-Sent Events. On connect a `retry:` hint, then `event: snapshot` with `id: <version>`
and `data:` the GET /top body (top 10), unless Last-Event-ID (or ?lastEventId=) equals the current version.
Then `event: update`, same `id` and `data` plus `"ts"` (epoch ms when the push was built), only when the
top 10 changed and at most one per push interval (250 ms), newest state wins. `: ping` comments keep it open."""


def openapi_document(settings: Settings) -> bytes:
    """The document as JSON bytes, served as is by GET /openapi.json."""
    spec = APISpec(title="Scoreboard", version="0.1.0", openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
                   info={"description": "Durable, idempotent score increments and a live top 10."})
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("ErrorBody", schema=schemas.ErrorBody)
    increment_body = schemas.increment_body(tuple(settings.actions))
    spec.components.schema("IncrementBody", schema=increment_body)
    for error in ERRORS:
        spec.components.response(str(error.status), {
            "description": f"`{error.code}`", "content": {JSON: {"schema": "ErrorBody"}}})
    for path, operations in _paths(increment_body).items():
        spec.path(path=path, operations=operations)
    for path, operations in board_paths(_operation, _json, _content, list(settings.actions)).items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["components"]["schemas"]["IncrementBody"]["properties"]["action"]["enum"] = [*settings.actions, None]
    return json.dumps(document, separators=(",", ":")).encode()


def _operation(summary: str, ok: dict[str, Any], failures: Iterable[int], *, scope: str | None = None,
               parameters: list[dict[str, Any]] | None = None, body: Any = None) -> dict[str, Any]:
    """One operation: its success responses, the error responses it can give (500 always), auth, inputs."""
    statuses = sorted({*failures, *(AUTHED if scope else ()), *(BODY if body else ()), 500})
    operation: dict[str, Any] = {
        "summary": summary, "parameters": parameters or [],
        "responses": {**ok, **{str(status): str(status) for status in statuses}},
    }
    if scope is not None:
        operation["security"] = [{"bearerAuth": []}]
        operation["description"] = f"Needs a bearer token with the `{scope}` scope."
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return operation


def _json(description: str, schema: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _content(description: str, media_type: str, text: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string", "description": text}}}}


NO_CONTENT = {"204": {"description": "done"}}


def _user() -> dict[str, Any]:
    """A fresh userId path parameter each time: apispec rewrites the ones it is given."""
    return {"in": "path", "schema": schemas.UserPath}


def _paths(increment_body: schemas.IncrementBody) -> dict[str, dict[str, Any]]:
    return {**_reads(), **_writes(increment_body), **_operations()}


def _reads() -> dict[str, dict[str, Any]]:
    stream_parameters = [
        {"in": "header", "name": "Last-Event-ID", "schema": {"type": "string"}, "required": False},
        {"in": "query", "name": "lastEventId", "schema": {"type": "string"}, "required": False},
    ]
    return {
        "/top": {"get": _operation("The top N", {
            "200": _json("the top N; ETag is the version", schemas.TopResponse),
            "304": {"description": "If-None-Match matched the version"},
        }, (400, 503), parameters=[{"in": "query", "schema": schemas.TopQuery}])},
        "/scores/{userId}": {"get": _operation("A user's score and rank", {
            "200": _json("the user, and with ?around= the entries around", schemas.ScoreResponse),
        }, (400, 404, 503), parameters=[_user(), {"in": "query", "schema": schemas.ScoreQuery}])},
        "/stream": {"get": _operation("The top 10, live", {
            "200": _content("an event stream", "text/event-stream", SSE_FORMAT),
        }, (429, 503), parameters=stream_parameters)},
        "/": {"get": _operation("The scoreboard page", {"200": _content("the page", "text/html", "HTML")}, ())},
        "/static/{path}": {"get": _operation("The page's assets", {
            "200": {"description": "a file"}, "403": {"description": "outside the directory"},
            "404": {"description": "no such file"},
        }, (), parameters=[{"in": "path", "name": "path", "required": True, "schema": {"type": "string"}}])},
    }


def _writes(increment_body: schemas.IncrementBody) -> dict[str, dict[str, Any]]:
    return {
        "/scores/increment": {
            "post": _operation("Apply an action's points once per actionId", {
                "200": _json("applied, or the record of a replayed actionId", schemas.IncrementResponse),
            }, (409, 410, 429, 503), scope="scores:write", body=increment_body),
            # `increment` is also a valid userId: GET reads that user, as GET /scores/{userId} would.
            "get": _operation("The score and rank of the user whose id is `increment`", {
                "200": _json("the user, and with ?around= the entries around", schemas.ScoreResponse),
            }, (400, 404, 503), parameters=[{"in": "query", "schema": schemas.ScoreQuery}]),
        },
        "/users/{userId}": {
            "put": _operation("Create or rename a user", {"200": _json("the user", schemas.ScoreResponse)},
                              (410, 503), scope="users:write", parameters=[_user()], body=schemas.UserBody),
            "delete": _operation("Delete a user", NO_CONTENT, (400, 404, 503), scope="users:delete",
                                 parameters=[_user()]),
        },
        "/users/{userId}/events": {"get": _operation("A user's audit log, newest first", {
            "200": _json("a page of events", schemas.EventsResponse),
        }, (400, 404, 503), scope="audit:read", parameters=[_user(), {"in": "query", "schema": schemas.EventsQuery}])},
        "/users/{userId}/flag": {"delete": _operation("Clear a user's anomaly flag", NO_CONTENT, (400, 404, 503),
                                                      scope="users:write", parameters=[_user()])},
    }


def _operations() -> dict[str, dict[str, Any]]:
    return {
        "/healthz": {"get": _operation("Liveness", {"200": _json("the process runs", schemas.HealthResponse)}, ())},
        "/readyz": {"get": _operation("Readiness", {
            "200": _json("the database answers (Redis status reported)", schemas.ReadyResponse),
            "503": _json("the database does not answer", schemas.ReadyResponse),
        }, ())},
        "/metrics": {"get": _operation("Prometheus metrics", {
            "200": _content("the text exposition format", "text/plain", "Prometheus text format 0.0.4"),
        }, ())},
        "/openapi.json": {"get": _operation("This document", {"200": _json("OpenAPI 3", {"type": "object"})}, ())},
    }
