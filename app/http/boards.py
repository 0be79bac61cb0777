"""Board handlers: GET /boards, PUT and DELETE /boards/{boardId}, and each board's top, scores and stream."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from app.board_hubs import pair_snapshot
from app.boards import BoardConfig, is_main_all
from app.http import board_schemas as bs
from app.http.handlers import path_user_id, standing_body
from app.http.keys import BOARD_HUBS, BOARDS, HUB, SETTINGS
from app.http.parsing import authenticated, etag_matches, json_body, load, path_param
from app.hub import TOP_SIZE

_BOARD_PATH = bs.BoardPath()
_TOP_QUERY = bs.BoardTopQuery()
_SCORE_QUERY = bs.BoardScoreQuery()
_STREAM_QUERY = bs.BoardStreamQuery()


def board_id(request: web.Request) -> str:
    return path_param(request, "boardId", bs.BOARD_ID_PATTERN, _BOARD_PATH)


def board_body(board: BoardConfig) -> dict[str, Any]:
    return {"id": board.board_id, "title": board.title,
            "actions": None if board.actions is None else list(board.actions),
            "periods": list(board.periods), "timeZone": board.time_zone}


async def list_boards(request: web.Request) -> web.Response:
    return web.json_response({"boards": [board_body(b) for b in await request.app[BOARDS].all()]})


async def put_board(request: web.Request) -> web.Response:
    await authenticated(request, "boards:write")
    target = board_id(request)
    body = await json_body(request, bs.board_body(tuple(request.app[SETTINGS].actions)))
    actions = None if body["actions"] is None else tuple(body["actions"])
    board = BoardConfig(target, body["title"], actions, tuple(body["periods"]), body["timeZone"])
    return web.json_response(board_body(await request.app[BOARDS].save(board)))


async def delete_board(request: web.Request) -> web.Response:
    await authenticated(request, "boards:write")
    await request.app[BOARDS].delete(board_id(request))
    return web.Response(status=204)


async def board_top(request: web.Request) -> web.Response:
    target, query = board_id(request), load(_TOP_QUERY, request.query)
    boards = request.app[BOARDS]
    board, key = await boards.period_key(target, query["period"], query["at"])
    hub = request.app[BOARD_HUBS].watched(target, query["period"])
    if hub is not None and hub.key == key and query["limit"] == TOP_SIZE:
        snapshot = hub.snapshot  # a watched pair's top 10 is in memory: no round trip
    else:
        if is_main_all(target, query["period"]) and query["limit"] == TOP_SIZE:
            entries = list(request.app[HUB].snapshot.entries)  # GET /top's, kept current by the main hub
        else:
            entries = await boards.top(target, key, query["limit"])
        snapshot = pair_snapshot(entries, board.board_id, query["period"], key)
    headers = {"ETag": snapshot.etag, "Cache-Control": "no-cache"}
    if "If-None-Match" in request.headers and etag_matches(request, snapshot.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = "application/json"
    return web.Response(body=snapshot.encoded, headers=headers)


async def board_score(request: web.Request) -> web.Response:
    target, user_id = board_id(request), path_user_id(request)
    query = load(_SCORE_QUERY, request.query)
    boards = request.app[BOARDS]
    _, key = await boards.period_key(target, query["period"], query["at"])
    standing = await boards.standing(target, key, user_id, query["around"])
    body = standing_body(standing, query["around"] if "around" in request.query else None)
    return web.json_response({**body, "board": target, "period": query["period"], "periodKey": key})
