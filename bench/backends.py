"""The backend pairs a run measures: embedded SQLite + memory always, PostgreSQL + Redis when reachable."""
from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from app.config import Settings

SECRET = "bench-secret-" + "0123456789abcdef" * 4
# Limits far above what one run sends: the limiter's cost is measured, its refusals are not.
BASE = Settings(jwt_secret=SECRET, rate_limit_user="10000000/hour", rate_limit_caller="100000000/hour")


class Unavailable(Exception):
    """A backend's server is not reachable: its rows are skipped with this reason."""


@dataclass(frozen=True)
class Services:
    postgres_url: str
    redis_url: str

    @classmethod
    def from_env(cls) -> Services:
        """BENCH_DATABASE_URL / BENCH_REDIS_URL, else the tests' TEST_* ones, else 127.0.0.1."""
        return cls(
            postgres_url=os.environ.get("BENCH_DATABASE_URL")
            or os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
            redis_url=os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        )


@contextlib.contextmanager
def embedded() -> Iterator[Settings]:
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        yield replace(BASE, database_url=f"sqlite:///{directory}/bench.db")


@contextlib.contextmanager
def services(where: Services) -> Iterator[Settings]:
    """A fresh PostgreSQL schema and Redis key prefix, both removed afterwards."""
    for url, port in ((where.postgres_url, 5432), (where.redis_url, 6379)):
        if not _reachable(url, port):
            raise Unavailable(f"{url} is unreachable")
    schema, prefix = f"bench_{uuid.uuid4().hex[:12]}", f"bench:{uuid.uuid4().hex[:12]}:"
    _postgres(where.postgres_url, f"CREATE SCHEMA {schema}")
    try:
        yield replace(BASE, database_url=f"{where.postgres_url}?schema={schema}", redis_url=where.redis_url,
                      redis_prefix=prefix)
    finally:
        _postgres(where.postgres_url, f"DROP SCHEMA {schema} CASCADE")
        _forget_redis(where.redis_url, prefix)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 1):
            return True
    except OSError:
        return False


def _postgres(url: str, sql: str) -> None:
    import psycopg2

    try:
        conn = psycopg2.connect(url, connect_timeout=3)
    except psycopg2.Error as exc:
        raise Unavailable(f"PostgreSQL refused: {str(exc).strip()}") from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _forget_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
