"""REST handlers: authenticate, validate, call the Scoreboard, shape the response."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, validate

from app.domain import AuditEvent, IncrementResult, Standing
from app.http import schemas
from app.http.keys import HUB, METRICS, MODERATION, SCOREBOARD, SETTINGS
from app.http.parsing import authenticated, json_body, json_object, load, path_param
from app.http.prebuilt import snapshot_answer
from app.hub import TOP_SIZE
from app.ops.logs import access_record
from app.service import audit_fields
from app.snapshot import Snapshot, entry_body

# Built once: marshmallow copies every declared field when a schema is constructed.
_USER_PATH = schemas.UserPath()
_TOP_QUERY = schemas.TopQuery()
_SCORE_QUERY = schemas.ScoreQuery()
_USER_BODY = schemas.UserBody()
_EVENTS_QUERY = schemas.EventsQuery()

def _increment_body(result: IncrementResult) -> dict[str, Any]:
    return {
        "userId": result.user_id, "actionId": result.action_id, "action": result.action,
        "delta": result.delta, "newScore": result.new_score, "applied": result.applied,
    }


def path_user_id(request: web.Request) -> str:
    return path_param(request, "userId", schemas.USER_ID_PATTERN, _USER_PATH)


def standing_body(standing: Standing, around: int | None = None) -> dict[str, Any]:
    entry = standing.entry
    body: dict[str, Any] = {
        "userId": entry.user_id, "displayName": entry.display_name, "score": entry.score, "rank": standing.rank,
    }
    if around is not None:
        first = max(standing.rank - around, 1)
        body["around"] = [entry_body(e, rank) for rank, e in enumerate(standing.around, first)]
    return body


async def increment(request: web.Request) -> web.Response:
    caller = await authenticated(request, "scores:write")
    schema, data = schemas.increment_body(tuple(request.app[SETTINGS].actions)), await json_object(request)
    body = schema.fast_load(data) or load(schema, data)
    result, quota = await request.app[SCOREBOARD].increment(
        caller.sub, body["userId"], body["actionId"], body["action"])
    if result.applied:  # the access line carries it: one log line per increment
        access_record(request).fields = {"audit": audit_fields(result, caller.sub)}
    request.app[METRICS].count_increment(result.applied)
    return web.json_response(_increment_body(result), headers=quota.headers() if quota else None)


class _IntegerParameter:
    """A query's integer parameter, read on the hot path without a schema load: the default or
    plain digits in range are taken here; anything else (and its error) goes through the schema,
    which stays the one definition of the rules."""

    def __init__(self, schema: Schema, name: str) -> None:
        field = schema.fields[name]
        bounds = next(v for v in field.validators if isinstance(v, validate.Range))
        self.schema, self.name, self.default = schema, name, int(field.load_default)
        self.low, self.high = int(bounds.min), int(bounds.max)

    def read(self, request: web.Request) -> int:
        raw = request.query.get(self.name) if request.query_string else None  # no query: no MultiDict
        if raw is None:
            return self.default
        if raw.isascii() and raw.isdigit() and len(raw) < 4 and self.low <= int(raw) <= self.high:
            return int(raw)
        value: int = load(self.schema, request.query)[self.name]
        return value


_LIMIT = _IntegerParameter(_TOP_QUERY, "limit")
_AROUND = _IntegerParameter(_SCORE_QUERY, "around")


async def top(request: web.Request) -> web.StreamResponse:
    limit = _LIMIT.read(request)
    # The hub's top 10 is kept current by the bus: no database or Redis round trip for it,
    # and its body is encoded once per version.
    hub = request.app[HUB]
    snapshot = hub.snapshot if limit == TOP_SIZE else Snapshot.of(await request.app[SCOREBOARD].top(limit))
    return snapshot_answer(request, snapshot, bool(request.app[SETTINGS].cors_origins))


async def score(request: web.Request) -> web.Response:
    user_id = path_user_id(request)
    around = _AROUND.read(request)
    standing = await request.app[SCOREBOARD].standing(user_id, around)
    return web.json_response(standing_body(standing, around if "around" in request.query else None))


async def put_user(request: web.Request) -> web.Response:
    await authenticated(request, "users:write")
    user_id = path_user_id(request)
    body = await json_body(request, _USER_BODY)
    standing = await request.app[SCOREBOARD].save_user(user_id, body["displayName"])
    return web.json_response(standing_body(standing))


async def delete_user(request: web.Request) -> web.Response:
    await authenticated(request, "users:delete")
    await request.app[SCOREBOARD].delete_user(path_user_id(request))
    return web.Response(status=204)


async def user_events(request: web.Request) -> web.Response:
    await authenticated(request, "audit:read")
    user_id = path_user_id(request)
    query = load(_EVENTS_QUERY, request.query)
    events, next_id = await request.app[MODERATION].events(user_id, query["cursor"], query["limit"])
    return web.json_response({
        "events": [_event_body(event) for event in events],
        "nextCursor": None if next_id is None else schemas.encode_cursor(next_id),
    })


async def clear_flag(request: web.Request) -> web.Response:
    await authenticated(request, "users:write")
    await request.app[MODERATION].clear_flag(path_user_id(request))
    return web.Response(status=204)


def _event_body(event: AuditEvent) -> dict[str, Any]:
    return {
        "actionId": event.action_id, "action": event.action, "delta": event.delta,
        "scoreAfter": event.score_after, "caller": event.caller,
        "at": event.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
