"""marshmallow schemas of request bodies and query strings: validation only, no I/O."""
from __future__ import annotations

import functools
import re
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates

USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}\Z")
ACTION_ID_PATTERN = re.compile(r"^[\x20-\x7e]{1,128}\Z")
USER_ID = validate.Regexp(USER_ID_PATTERN, error="1..64 characters of A-Z a-z 0-9 _ . : @ -")
ACTION_ID = validate.Regexp(ACTION_ID_PATTERN, error="1..128 printable ASCII characters")
INCREMENT_FIELDS = frozenset({"userId", "actionId", "action"})
# Lone surrogates (legal as \udxxx escapes in JSON) cannot be stored as UTF-8: refused like control characters.
# The length is its own validator so the document says minLength/maxLength; the pattern it
# documents is the ECMA-262 spelling tools can use (JSON text cannot carry a lone surrogate to them).
DISPLAY_NAME = (
    validate.Length(1, 32, error="1..32 characters"),
    validate.Regexp(r"^[^\x00-\x1f\x7f-\x9f\ud800-\udfff]*\Z", error="no control characters"),
)
DISPLAY_NAME_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


class IncrementBody(Schema):
    class Meta:
        unknown = RAISE

    userId = fields.String(required=True, validate=USER_ID)
    actionId = fields.String(required=True, validate=ACTION_ID)
    action = fields.String(load_default=None)

    def __init__(self, actions: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.actions = actions

    def fast_load(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """What `load` returns for a body it accepts, without its per-field machinery (the hot path);
        None for anything else, which `load` then refuses with its detailed errors."""
        user_id, action_id, action = data.get("userId"), data.get("actionId"), data.get("action")
        if data.keys() <= INCREMENT_FIELDS and isinstance(user_id, str) \
                and isinstance(action_id, str) and (action is None or action in self.actions) \
                and USER_ID_PATTERN.match(user_id) and ACTION_ID_PATTERN.match(action_id):
            return {"userId": user_id, "actionId": action_id, "action": action}
        return None

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

    displayName = fields.String(required=True, validate=DISPLAY_NAME, metadata={"pattern": DISPLAY_NAME_PATTERN})


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
    """A page cursor: the last event id shown, in decimal (a client treats it as opaque)."""
    return str(event_id)


# Every string the pattern admits is a cursor (at most 18 digits stays below 2**63), so the
# documented pattern and the validation are the same rule.
CURSOR = validate.Regexp(r"^[0-9]{1,18}\Z", error="not a cursor from a previous page")


class Cursor(fields.Field[int]):
    """A cursor from a previous page of GET /users/{id}/events, decoded to the event id."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        return int(CURSOR(str(value)))


class EventsQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    cursor = Cursor(load_default=None, metadata={
        "type": "string", "pattern": "^[0-9]{1,18}$", "description": "nextCursor of a previous page"})
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
