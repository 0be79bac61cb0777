"""What every handler reads from a request: the caller, a JSON body, query and path parameters
checked by their schemas (each failure as the contract's error), and If-None-Match."""
from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError

from app.auth.tokens import Caller
from app.errors import UnsupportedMediaType, ValidationFailed
from app.http.keys import VERIFIER
from app.ops.logs import access_record


async def authenticated(request: web.Request, scope: str) -> Caller:
    who = await request.app[VERIFIER].caller(request.headers.get("Authorization"))
    access_record(request).sub = who.sub
    who.require(scope)
    return who


def load(schema: Schema, data: Any) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        fields = exc.normalized_messages()  # type: ignore[no-untyped-call]
        raise ValidationFailed("the request is invalid", {"fields": fields}) from None
    return loaded


async def json_body(request: web.Request, schema: Schema) -> dict[str, Any]:
    return load(schema, await json_object(request))


async def json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    raw = await request.read()  # bounded by client_max_size: aiohttp answers 413 beyond it
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, too many digits, nested too deep
        raise ValidationFailed(f"the body is not valid JSON: {exc}", {"fields": {"body": ["malformed JSON"]}}) from None
    if not isinstance(data, dict):
        raise ValidationFailed("the body must be a JSON object", {"fields": {"body": ["not an object"]}})
    return data


def path_param(request: web.Request, name: str, pattern: re.Pattern[str], schema: Schema) -> str:
    """A path parameter checked against its schema's own pattern, and loaded through the schema
    (for its error naming the field) only when it does not match."""
    raw = request.match_info[name]
    if pattern.match(raw):
        return raw
    loaded: str = load(schema, {name: raw})[name]
    return loaded


def etag_matches(request: web.Request, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in request.headers.get("If-None-Match", "").split(",")}
    return etag in tags or "*" in tags
