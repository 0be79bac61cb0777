"""The whole URL table: every handler guarded (app.http.guard), and a last route for the rest."""
from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from app.errors import NotFound
from app.http import board_stream, boards, handlers, ops, stream
from app.http.guard import guarded, unrouted

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
# The page's files, listed once at start: a request names one of them or gets a 404, and
# no request path ever reaches the file system.
STATIC_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()}


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def static_file(request: web.Request) -> web.FileResponse:
    path = STATIC_FILES.get(request.match_info["path"])
    if path is None:
        raise NotFound("no such file")
    return web.FileResponse(path)


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/", index),
    ("GET", "/static/{path}", static_file),
    ("GET", "/top", handlers.top),
    ("GET", "/stream", stream.stream),
    ("GET", "/scores/{userId}", handlers.score),
    ("POST", "/scores/increment", handlers.increment),
    ("PUT", "/users/{userId}", handlers.put_user),
    ("DELETE", "/users/{userId}", handlers.delete_user),
    ("GET", "/users/{userId}/events", handlers.user_events),
    ("DELETE", "/users/{userId}/flag", handlers.clear_flag),
    ("GET", "/boards", boards.list_boards),
    ("PUT", "/boards/{boardId}", boards.put_board),
    ("DELETE", "/boards/{boardId}", boards.delete_board),
    ("GET", "/boards/{boardId}/top", boards.board_top),
    ("GET", "/boards/{boardId}/scores/{userId}", boards.board_score),
    ("GET", "/boards/{boardId}/stream", board_stream.board_stream),
    ("GET", "/healthz", ops.healthz),
    ("GET", "/readyz", ops.readyz),
    ("GET", "/metrics", ops.metrics),
    ("GET", "/openapi.json", ops.openapi),
]


def setup_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, guarded(handler))
    app.router.add_route("*", r"/{path:[\s\S]*}", guarded(unrouted))  # last: only what no route above answers
