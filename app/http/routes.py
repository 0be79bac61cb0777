"""The whole URL table."""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from app.http import board_stream, boards, handlers, ops, stream

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC_DIR)
    app.router.add_get("/top", handlers.top)
    app.router.add_get("/stream", stream.stream)
    app.router.add_get("/scores/{userId}", handlers.score)
    app.router.add_post("/scores/increment", handlers.increment)
    app.router.add_put("/users/{userId}", handlers.put_user)
    app.router.add_delete("/users/{userId}", handlers.delete_user)
    app.router.add_get("/users/{userId}/events", handlers.user_events)
    app.router.add_delete("/users/{userId}/flag", handlers.clear_flag)
    app.router.add_get("/boards", boards.list_boards)
    app.router.add_put("/boards/{boardId}", boards.put_board)
    app.router.add_delete("/boards/{boardId}", boards.delete_board)
    app.router.add_get("/boards/{boardId}/top", boards.board_top)
    app.router.add_get("/boards/{boardId}/scores/{userId}", boards.board_score)
    app.router.add_get("/boards/{boardId}/stream", board_stream.board_stream)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/readyz", ops.readyz)
    app.router.add_get("/metrics", ops.metrics)
    app.router.add_get("/openapi.json", ops.openapi)
