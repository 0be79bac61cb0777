"""The anchor for GET /top: a bare aiohttp app returning the same bytes (`python -m bench.trivial PORT FILE`)."""
from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def make_app(body: bytes) -> web.Application:
    async def top(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/top", top)
    return app


if __name__ == "__main__":
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    web.run_app(make_app(path.read_bytes()), host="127.0.0.1", port=port, access_log=None, print=None)
