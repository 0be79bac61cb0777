"""marshmallow schemas of the board endpoints: bodies, query strings and responses; no I/O."""
from __future__ import annotations

import functools
import re
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates

from app.http import schemas
from app.periods import PERIODS, time_zones

BOARD_ID_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}\Z")
BOARD_ID = validate.Regexp(BOARD_ID_PATTERN, error="1..64 characters of a-z 0-9 _ -")
PERIOD = validate.OneOf(PERIODS, error="one of: " + ", ".join(PERIODS))


class BoardPath(Schema):
    boardId = fields.String(required=True, validate=BOARD_ID)


class BoardBody(Schema):
    class Meta:
        unknown = RAISE

    # As display names: no control characters, no lone surrogates (they cannot be stored as UTF-8).
    title = fields.String(required=True, metadata={"pattern": schemas.DISPLAY_NAME_PATTERN}, validate=(
        validate.Length(1, 64, error="1..64 characters"), schemas.DISPLAY_NAME[1]))
    actions = fields.List(fields.String(), load_default=None, allow_none=True, validate=validate.Length(min=1),
                          metadata={"description": "the SCORE_ACTIONS names that count; null: every action"})
    periods = fields.List(fields.String(validate=PERIOD), load_default=lambda: ["all"],
                          validate=validate.Length(min=1, max=len(PERIODS)))
    timeZone = fields.String(load_default="UTC", validate=validate.Length(1, 64),
                             metadata={"description": "IANA time zone of the period boundaries"})

    def __init__(self, actions: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.known_actions = actions

    @validates("actions")
    def _known_actions(self, value: list[str] | None, **kwargs: Any) -> None:
        unknown = sorted(set(value or ()) - set(self.known_actions))
        if unknown:
            raise ValidationError(f"unknown actions {', '.join(unknown)}; known: {', '.join(self.known_actions)}")
        if value is not None and len(set(value)) != len(value):
            raise ValidationError("an action is listed twice")

    @validates("periods")
    def _distinct(self, value: list[str], **kwargs: Any) -> None:
        if len(set(value)) != len(value):
            raise ValidationError("a period is listed twice")

    @validates("timeZone")
    def _known_zone(self, value: str, **kwargs: Any) -> None:
        if value not in time_zones():
            raise ValidationError("not an IANA time zone name (such as UTC or Europe/Paris)")


@functools.cache
def board_body(actions: tuple[str, ...]) -> BoardBody:
    """One schema per action table, built once."""
    return BoardBody(list(actions))


class _PeriodQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    period = fields.String(load_default="all", validate=PERIOD)
    at = fields.Date(load_default=None, metadata={
        "description": "an ISO date: the period that contains it (default: today in the board's time zone)"})


class BoardTopQuery(_PeriodQuery):
    limit = fields.Integer(load_default=10, validate=validate.Range(1, 50))


class BoardScoreQuery(_PeriodQuery):
    around = fields.Integer(load_default=0, validate=validate.Range(0, 25))


class BoardStreamQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    period = fields.String(load_default="all", validate=PERIOD)


class BoardResponse(Schema):
    id = fields.String(required=True)
    title = fields.String(required=True)
    actions = fields.List(fields.String(), required=True, allow_none=True)
    periods = fields.List(fields.String(), required=True)
    timeZone = fields.String(required=True)


class BoardsResponse(Schema):
    boards = fields.List(fields.Nested(BoardResponse), required=True)


class _PairFields(Schema):
    board = fields.String(required=True)
    period = fields.String(required=True, metadata={"enum": list(PERIODS)})
    periodKey = fields.String(required=True, metadata={"description": "all, 2026-11-23, 2026-W48 or 2026-11"})


class BoardTopResponse(schemas.TopResponse, _PairFields):
    pass


class BoardScoreResponse(schemas.ScoreResponse, _PairFields):
    pass
