"""marshmallow schemas of request bodies and query strings: validation only, no I/O."""
from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates

USER_ID = validate.Regexp(r"^[A-Za-z0-9_.:@-]{1,64}\Z", error="1..64 characters of A-Z a-z 0-9 _ . : @ -")
ACTION_ID = validate.Regexp(r"^[\x20-\x7e]{1,128}\Z", error="1..128 printable ASCII characters")
DISPLAY_NAME = validate.Regexp(r"^[^\x00-\x1f\x7f-\x9f]{1,32}\Z", error="1..32 characters, no control characters")


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
