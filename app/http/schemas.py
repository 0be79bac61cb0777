"""marshmallow schemas of request bodies and query strings: validation only, no I/O."""
from __future__ import annotations

import base64
import binascii
import functools
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates

USER_ID = validate.Regexp(r"^[A-Za-z0-9_.:@-]{1,64}\Z", error="1..64 characters of A-Z a-z 0-9 _ . : @ -")
ACTION_ID = validate.Regexp(r"^[\x20-\x7e]{1,128}\Z", error="1..128 printable ASCII characters")
INT64_MAX = 2**63 - 1
# Lone surrogates (legal as \udxxx escapes in JSON) cannot be stored as UTF-8: refused like control characters.
DISPLAY_NAME = validate.Regexp(r"^[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,32}\Z",
                               error="1..32 characters, no control characters")


class IncrementBody(Schema):
    class Meta:
        unknown = RAISE

    userId = fields.String(required=True, validate=USER_ID)
    actionId = fields.String(required=True, validate=ACTION_ID)
    action = fields.String(load_default=None)

    def __init__(self, actions: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.actions = actions

    @validates("action")
    def _known_action(self, value: str | None, **kwargs: Any) -> None:
        if value is not None and value not in self.actions:
            raise ValidationError(f"must be one of: {', '.join(self.actions)}")


@functools.cache
def increment_body(actions: tuple[str, ...]) -> IncrementBody:
    """One schema per action table, built once rather than per request."""
    return IncrementBody(list(actions))


class UserBody(Schema):
    class Meta:
        unknown = RAISE

    displayName = fields.String(required=True, validate=DISPLAY_NAME)


class UserPath(Schema):
    userId = fields.String(required=True, validate=USER_ID)


# Query strings ignore unknown parameters, so cache busters such as ?_=123 do no harm.
class TopQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    limit = fields.Integer(load_default=10, validate=validate.Range(1, 50))


class ScoreQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    around = fields.Integer(load_default=0, validate=validate.Range(0, 25))


def encode_cursor(event_id: int) -> str:
    """An opaque page cursor: the last event id shown, base64url without padding."""
    return base64.urlsafe_b64encode(str(event_id).encode()).rstrip(b"=").decode()


class Cursor(fields.Field[int]):
    """A cursor from a previous page of GET /users/{id}/events, decoded to the event id."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        text = _unbase64(str(value))
        event_id = int(text) if text.isdigit() and len(text) <= 19 else 0
        # Canonical form only: every id has exactly one cursor.
        if not 0 < event_id <= INT64_MAX or encode_cursor(event_id) != value:
            raise ValidationError("not a cursor from a previous page")
        return event_id


def _unbase64(text: str) -> str:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        return ""


class EventsQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    cursor = Cursor(load_default=None, metadata={"type": "string", "description": "nextCursor of a previous page"})
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))


# Response bodies: they document what the handlers send (the OpenAPI document is built from them).
class EntryBody(Schema):
    rank = fields.Integer(required=True)
    userId = fields.String(required=True)
    displayName = fields.String(required=True, allow_none=True)
    score = fields.Integer(required=True)


class TopResponse(Schema):
    entries = fields.List(fields.Nested(EntryBody), required=True)
    version = fields.String(required=True, metadata={"description": "the top-N state; also the ETag"})
    generatedAt = fields.String(required=True, metadata={"format": "date-time"})


class ScoreResponse(Schema):
    userId = fields.String(required=True)
    displayName = fields.String(required=True, allow_none=True)
    score = fields.Integer(required=True)
    rank = fields.Integer(required=True)
    around = fields.List(fields.Nested(EntryBody), metadata={"description": "only with ?around="})


class IncrementResponse(Schema):
    userId = fields.String(required=True)
    actionId = fields.String(required=True)
    action = fields.String(required=True)
    delta = fields.Integer(required=True)
    newScore = fields.Integer(required=True)
    applied = fields.Boolean(required=True, metadata={"description": "false for a replayed actionId"})


class AuditEventBody(Schema):
    actionId = fields.String(required=True)
    action = fields.String(required=True)
    delta = fields.Integer(required=True)
    scoreAfter = fields.Integer(required=True)
    caller = fields.String(required=True)
    at = fields.String(required=True, metadata={"format": "date-time"})


class EventsResponse(Schema):
    events = fields.List(fields.Nested(AuditEventBody), required=True)
    nextCursor = fields.String(required=True, allow_none=True)


class ErrorDetail(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorBody(Schema):
    error = fields.Nested(ErrorDetail, required=True)


class HealthResponse(Schema):
    status = fields.String(required=True)
    pid = fields.Integer(required=True, metadata={"description": "the worker process that answered"})


class ReadyResponse(Schema):
    status = fields.String(required=True, metadata={"enum": ["ready", "unavailable"]})
    failed = fields.Dict(keys=fields.String(), values=fields.String(),
                         metadata={"description": "failing required dependency: its error"})
    redis = fields.String(metadata={"description": "ok, unavailable, or not configured (degraded, still ready)"})
    streams = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "open streams of this process, STREAM_MAX, and the open-files limit it was sized from"})
