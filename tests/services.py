"""Where the real PostgreSQL and Redis for tests are, and what to do when they are not there.

Locally an unreachable service skips its tests with the reason; under CI=true it fails them.
"""
from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 1):
            return True
    except OSError:
        return False


def require(url: str, default_port: int) -> str:
    """Return `url` if its server answers; otherwise skip, or fail under CI."""
    if not _reachable(url, default_port):
        reason = f"{url} is unreachable"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI needs it", pytrace=False)
        pytest.skip(reason)
    return url


def require_postgres() -> str:
    return require(POSTGRES_URL, 5432)


def require_redis() -> str:
    return require(REDIS_URL, 6379)


START_WITHIN = 5.0


def free_port() -> int:
    """A loopback port nobody listens on right now (the one helper for every test)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A throwaway redis-server on its own port, to kill and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            stdout=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(START_WITHIN):
            while not await self._answers():  # noqa: ASYNC110 - the port is the only readiness signal
                await asyncio.sleep(0.05)

    async def _answers(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    async def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            await self._process.wait()
            self._process = None


def require_redis_server() -> None:
    """A `redis-server` binary to start privately; skip without it, or fail under CI."""
    import shutil

    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed; CI needs it", pytrace=False)
        pytest.skip("redis-server is not installed")

