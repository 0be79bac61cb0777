"""Fixtures: the app on each backend pair, given as data, and tokens signed like a real caller's."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import psycopg2
import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.store import Database, open_store
from app.store.migrations import migrate
from app.web import create_app
from tests.services import PrivateRedis, require_postgres, require_redis, require_redis_server
from tests.tcp_proxy import TcpProxy

SECRET = "test-secret-" + "0123456789abcdef" * 4  # long enough for every HMAC size

# Every API test runs on every supported pairing of store and live backend.
BACKENDS = [
    pytest.param("sqlite+memory", id="sqlite+memory"),
    pytest.param("postgres+memory", id="postgres+memory"),
    pytest.param("postgres+redis", id="postgres+redis"),
]


@dataclass
class PostgresSchema:
    """A fresh schema in the test database; the URL selects it with ?schema=."""

    base_url: str
    name: str = ""

    def __post_init__(self) -> None:
        self.name = f"t_{uuid.uuid4().hex[:16]}"

    @property
    def url(self) -> str:
        return f"{self.base_url}?schema={self.name}"

    def execute(self, sql: str) -> None:
        conn = psycopg2.connect(self.base_url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()


@pytest.fixture
def postgres_schema() -> Iterator[PostgresSchema]:
    schema = PostgresSchema(require_postgres())
    schema.execute(f"CREATE SCHEMA {schema.name}")
    yield schema
    schema.execute(f"DROP SCHEMA {schema.name} CASCADE")


# The Store (and AuditLog) contract suites run on both dialects.
DIALECTS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres")]


def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of the dialect the test is parametrised with."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    schema: PostgresSchema = request.getfixturevalue("postgres_schema")
    return schema.url


@pytest.fixture(params=DIALECTS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The dialect's store, migrated and open."""
    url = database_url(request, tmp_path)
    await asyncio.to_thread(migrate, url)
    async with open_store(url, 5.0) as store:
        yield store


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    import redis

    client = redis.Redis.from_url(require_redis())
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


BASE_SETTINGS = Settings(jwt_secret=SECRET, push_interval=0.05, ping_interval=1.0, db_timeout=5.0,
                         rate_limit_user="1000/minute", rate_limit_caller="100000/minute")


def embedded_settings(tmp_path: Path) -> Settings:
    """SQLite and the in-process bus: for suites about HTTP alone, which need run on one pairing only."""
    return replace(BASE_SETTINGS, database_url=f"sqlite:///{tmp_path}/scoreboard.db")


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite+memory":
        return embedded_settings(tmp_path)
    schema = request.getfixturevalue("postgres_schema")
    if request.param == "postgres+memory":
        return replace(BASE_SETTINGS, database_url=schema.url)
    prefix = request.getfixturevalue("redis_prefix")
    return replace(BASE_SETTINGS, database_url=schema.url, redis_url=require_redis(), redis_prefix=prefix)


MakeClient = Callable[[Settings], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(aiohttp_client: Any) -> MakeClient:
    async def make(settings: Settings) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
        return client

    return make


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> TestClient[Any, Any]:
    return await make_client(settings)


def token(scope: str = "scores:write users:write users:delete", sub: str = "game-1", **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "scope": scope, "aud": "scoreboard", "exp": int(time.time()) + 600}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")


def auth(scope: str = "scores:write users:write users:delete", sub: str = "game-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(scope, sub)}"}


@pytest.fixture
def post_increment(client: TestClient[Any, Any]) -> Callable[..., Awaitable[Any]]:
    """POST /scores/increment; returns (status, json body)."""

    async def post(user_id: str, action_id: str | None = None, **extra: Any) -> tuple[int, Any]:
        body = {"userId": user_id, "actionId": action_id or uuid.uuid4().hex, **extra}
        response = await client.post("/scores/increment", json=body, headers=auth())
        return response.status, await response.json()

    return post



async def eventually(check: Callable[[], Awaitable[None]], within: float = 3.0) -> None:
    """Retry an asserting check until it passes or the deadline ends (e.g. /top lags by a push interval)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.02)


async def top_entries(client: TestClient[Any, Any]) -> list[tuple[int, str, str | None, int]]:
    body = await (await client.get("/top")).json()
    return [(e["rank"], e["userId"], e["displayName"], e["score"]) for e in body["entries"]]


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    """A redis-server of the test's own, to kill and restart."""
    require_redis_server()
    server = PrivateRedis()
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


@pytest.fixture
async def proxy(postgres_schema: PostgresSchema) -> AsyncIterator[TcpProxy]:
    """A cuttable TCP path to the test's PostgreSQL."""
    target = urlsplit(postgres_schema.base_url)
    tcp = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await tcp.start()
    yield tcp
    await tcp.stop()


async def clear_of_window_end(window: float, margin: float) -> None:
    """Wait, when the current rate-limit window (of `window` seconds) ends within `margin`, until it
    has ended: the sliding-window counter rounds the previous window's weighted count down, so
    counts taken across a boundary can admit one request more than the limit."""
    left = window - time.time() % window
    if left < margin:
        await asyncio.sleep(left + 0.01)
