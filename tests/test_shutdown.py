"""SIGTERM with many open streams: every stream is stopped and the process exits in seconds."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp

from tests.conftest import SECRET
from tests.servers import Server
from tests.sse import SSEReader

# 200 keeps the suite fast; SHUTDOWN_STREAMS=1000 measures the contract's figure by hand.
STREAMS = int(os.environ.get("SHUTDOWN_STREAMS", "200"))
DEADLINE = 10.0


async def test_sigterm_with_open_streams_exits_quickly(tmp_path: Path) -> None:
    app = Server({
        **os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/scoreboard.db", "JWT_SECRET": SECRET,
        "STREAM_MAX_PER_CLIENT": str(STREAMS + 10),  # every stream comes from 127.0.0.1
    }, tmp_path / "app.log")
    await app.start_async(within=30)
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            responses = [await session.get(f"{app.url}/stream") for _ in range(STREAMS)]
            try:
                for response in responses:
                    assert response.status == 200
                    assert (await SSEReader(response.content).event(10)).type == "snapshot"
                took = await asyncio.to_thread(app.terminate, DEADLINE + 20)
            finally:
                for response in responses:
                    response.close()
        code = app.process.returncode if app.process is not None else None
        assert took < DEADLINE, app.output()
        assert code == 0, app.output()
    finally:
        await app.stop_async()
