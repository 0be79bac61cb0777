"""The board endpoints' part of the OpenAPI document (app/http/openapi.py assembles it)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.http import board_schemas as bs
from app.http import schemas

SCOPE = "boards:write"
PAIR_STREAM = """Server-Sent Events of one board and period, as GET /stream (snapshot, then updates,
Last-Event-ID, at most one update per push interval, `: ping` comments), the data carrying `board`,
`period` and `periodKey`. When the current period ends the stream sends its final state as an
`update`, then the new period's `snapshot`."""

Operation = Callable[..., dict[str, Any]]


def board_body_schema(actions: list[str]) -> dict[str, Any]:
    """PUT /boards/{boardId}'s body, with the enums apispec cannot derive from the validators."""
    return {
        "type": "object", "additionalProperties": False, "required": ["title"],
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": schemas.DISPLAY_NAME_PATTERN},
            "actions": {"type": "array", "nullable": True, "minItems": 1, "uniqueItems": True,
                        "items": {"type": "string", "enum": actions},
                        "description": "the SCORE_ACTIONS names that count toward the board; null: every action"},
            "periods": {"type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"type": "string", "enum": ["all", "daily", "weekly", "monthly"]}},
            "timeZone": {"type": "string", "minLength": 1, "maxLength": 64, "example": "Europe/Paris",
                         "description": "IANA time zone of the period boundaries (default UTC); an unknown "
                                        "name is 400"},
        },
    }


def _board() -> dict[str, Any]:
    return {"in": "path", "schema": bs.BoardPath}


def _user() -> dict[str, Any]:
    return {"in": "path", "name": "userId", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,64}$"}}


def board_paths(operation: Operation, json_content: Callable[[str, Any], dict[str, Any]],
                text_content: Callable[[str, str, str], dict[str, Any]],
                actions: list[str]) -> dict[str, dict[str, Any]]:
    not_found = "unknown board, a period the board does not have, or a future period: 404"
    return {
        "/boards": {"get": operation("Every board", {"200": json_content("the boards", bs.BoardsResponse)}, (503,))},
        "/boards/{boardId}": {
            "put": operation("Create or replace a board", {"200": json_content("the board", bs.BoardResponse)},
                             (503,), scope=SCOPE, parameters=[_board()], body=board_body_schema(actions)),
            "delete": operation("Delete a board (not main: 400)", {"204": {"description": "done"}}, (400, 404, 503),
                                scope=SCOPE, parameters=[_board()]),
        },
        "/boards/{boardId}/top": {"get": {**operation("The top N of a board's period", {
            "200": json_content("the top N; ETag is the version", bs.BoardTopResponse),
            "304": {"description": "If-None-Match matched the version"},
        }, (400, 404, 503), parameters=[_board(), {"in": "query", "schema": bs.BoardTopQuery}]),
            "description": not_found}},
        "/boards/{boardId}/scores/{userId}": {"get": {**operation("A user's score and rank on a board's period", {
            "200": json_content("the user, and with ?around= the entries around", bs.BoardScoreResponse),
        }, (400, 404, 503), parameters=[_board(), _user(), {"in": "query", "schema": bs.BoardScoreQuery}]),
            "description": not_found + "; so is a user with no score in that period"}},
        "/boards/{boardId}/stream": {"get": operation("A board's period, live", {
            "200": text_content("an event stream", "text/event-stream", PAIR_STREAM),
        }, (400, 404, 429, 503), parameters=[
            _board(), {"in": "query", "schema": bs.BoardStreamQuery},
            {"in": "query", "name": "lastEventId", "schema": {"type": "string"}, "required": False},
            {"in": "header", "name": "Last-Event-ID", "schema": {"type": "string"}, "required": False}])},
    }
