"""What a benchmark owns alone: a fresh PostgreSQL schema and a redis-server on its own port.

The shared PostgreSQL only gets a schema that is dropped afterwards; the shared Redis is never
touched (a benchmark that fills Redis or kills it runs its own).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import redis

from app.store.migrations import migrate

POSTGRES = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sql(url: str, statement: str) -> list[Any]:
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def create_schema(prefix: str) -> str:
    """A migrated schema named `prefix` + random hex."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    sql(POSTGRES, f"CREATE SCHEMA {name}")
    try:
        migrate(f"{POSTGRES}?schema={name}")
    except BaseException:
        drop_schema(name)
        raise
    return name


def drop_schema(name: str) -> None:
    sql(POSTGRES, f"DROP SCHEMA {name} CASCADE")


@contextmanager
def schema(prefix: str) -> Iterator[str]:
    """A migrated schema, dropped on exit."""
    name = create_schema(prefix)
    try:
        yield name
    finally:
        drop_schema(name)


class RedisServer:
    """`redis-server` without persistence on a free port, which can be killed and started again
    (empty) on the same port."""

    def __init__(self, port: int | None = None, pid: int | None = None) -> None:
        """A new server on a free port; or, with `port` and `pid`, one left running by an earlier run."""
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else self._pid

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            # a server kept for a later run holds none of our pipes nor our process group's signals
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: what a crash looks like to its clients (connections reset, then refused)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        elif self._pid is not None:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(self._pid, signal.SIGKILL)
            self._pid = None

    def used_memory_mb(self) -> float:
        client = redis.Redis(port=self.port)
        try:
            return float(client.info("memory")["used_memory"]) / 2**20
        finally:
            client.close()


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()
