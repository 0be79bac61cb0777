"""Where the real PostgreSQL and Redis for tests are, and what to do when they are not there.

Locally an unreachable service skips its tests with the reason; under CI=true it fails them.
"""
from __future__ import annotations

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
