"""Several gunicorn workers on one port: all serve, all push, metrics add up; embedded mode is refused."""
from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import PostgresSchema, auth, eventually
from tests.servers import Server, environment, gunicorn_command, running
from tests.services import require_redis

STREAMS = 8  # spread over two workers by the kernel; all on one worker would be a 1-in-128 chance


@pytest.fixture
def services_env(postgres_schema: PostgresSchema, redis_prefix: str, tmp_path: Path) -> dict[str, str]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    return environment(DATABASE_URL=postgres_schema.url, REDIS_URL=require_redis(), REDIS_PREFIX=redis_prefix,
                       WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))


async def _pids(server: Server, log: Path) -> set[int]:
    """The workers that answer /healthz on concurrent new connections, polled until both have answered:
    a worker logs "Booting worker" before its app is ready to accept."""
    _wait_booted(log)
    pids: set[int] = set()
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(server.url, connector=connector) as session:

        async def both_answered() -> None:
            answers = await asyncio.gather(*(session.get("/healthz") for _ in range(50)))
            pids.update([(await answer.json())["pid"] for answer in answers])
            assert len(pids) == 2, pids

        await eventually(both_answered, within=20)
    return pids


def _wait_booted(log: Path, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while log.read_text().count("Booting worker") < 2:
        assert time.monotonic() < deadline, "the second worker did not boot"
        time.sleep(0.1)


async def _next_update(response: aiohttp.ClientResponse) -> dict[str, Any]:
    event = b""
    async for line in response.content:
        if line.startswith(b"event: "):
            event = line.strip()
        elif line.startswith(b"data: ") and event == b"event: update":
            return dict(json.loads(line.removeprefix(b"data: ")))
    raise AssertionError("the stream ended")


async def test_two_workers_serve_and_push(services_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "gunicorn.log"
    with running(gunicorn_command(2), services_env, log) as server:
        assert len(await _pids(server, log)) == 2
        async with aiohttp.ClientSession(server.url) as session:
            streams = [await session.get("/stream") for _ in range(STREAMS)]

            async def summed() -> None:  # over both workers, whichever answers
                assert f"scoreboard_open_streams {float(STREAMS)}" in await (await session.get("/metrics")).text()

            await eventually(summed)
            body = {"userId": "u1", "actionId": uuid.uuid4().hex}
            assert (await session.post("/scores/increment", json=body, headers=auth())).status == 200
            async with asyncio.timeout(10):
                updates = await asyncio.gather(*(_next_update(stream) for stream in streams))
            assert all(update["entries"][0]["userId"] == "u1" for update in updates)
            for stream in streams:
                stream.close()


def test_embedded_mode_with_several_workers_is_refused(tmp_path: Path) -> None:
    env = environment(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite", WEB_CONCURRENCY="2")
    run = subprocess.run([*gunicorn_command(2), "--bind", "127.0.0.1:0"], env=env, capture_output=True,
                         text=True, timeout=30, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode != 0
    assert "configuration error: WEB_CONCURRENCY: more than 1 worker needs PostgreSQL" in run.stderr
