"""The database cut during a batch: every caller gets its 200, or a 503 after which its retry applies
exactly once; a COMMIT whose answer was lost is checked before answering, never called a 503."""
from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import aiohttp
import psycopg2
import pytest

from app.config import Settings
from app.domain import Increment, IncrementResult
from app.errors import ValidationFailed
from app.store import open_store
from app.store.migrations import migrate
from app.store.queries import INT64_MAX
from tests.conftest import SECRET, PostgresSchema, auth
from tests.servers import environment, running, serve_command
from tests.services import require_redis
from tests.tcp_proxy import TcpProxy

Post = Callable[[str, str], Awaitable[tuple[int, Any]]]
WRITE = b"INSERT INTO score_events"  # in the batch's one statement (and in the step-by-step plan's write)


class Cutting(TcpProxy):
    """Once armed, at the `after`-th client message containing `marker`: cut every connection, either
    before forwarding it or (`lose_answer`) after forwarding it, dropping the database's answer.
    With `then_refuse`, new connections are refused too, until started again."""

    def __init__(self, marker: bytes, after: int = 1, lose_answer: bool = False, then_refuse: bool = False) -> None:
        super().__init__("127.0.0.1", 5432)
        self.armed, self.fired = False, False
        self._marker, self._left, self._lose_answer, self._then_refuse = marker, after, lose_answer, then_refuse

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers.update((writer, upstream_writer))
        sent = asyncio.Event()
        for pipe in (self._forward(reader, upstream_writer, sent), self._answer(upstream_reader, writer, sent)):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _forward(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, sent: asyncio.Event) -> None:
        while data := await source.read(65536):
            if self.armed and self._marker in data:
                self._left -= 1
                if self._left == 0:
                    self.armed = False
                    if not self._lose_answer:
                        return self._cut()
                    sent.set()
            sink.write(data)
            await sink.drain()

    async def _answer(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, sent: asyncio.Event) -> None:
        while data := await source.read(65536):
            if sent.is_set():  # the database got the message; the client never hears its answer
                return self._cut()
            sink.write(data)
            await sink.drain()

    def _cut(self) -> None:
        self.fired = True
        if self._then_refuse and self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()


def via(schema: PostgresSchema, port: int) -> str:
    url = urlsplit(schema.url)
    return url._replace(netloc=f"{url.username}@127.0.0.1:{port}").geturl()


def rows(schema: PostgresSchema, sql: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(schema.base_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.replace("{s}", schema.name))
            return list(cur.fetchall())
    finally:
        conn.close()


def poster(client: Any) -> Post:
    async def post(user_id: str, action_id: str) -> tuple[int, Any]:
        response = await client.post("/scores/increment", json={"userId": user_id, "actionId": action_id},
                                     headers=auth())
        return response.status, await response.json()
    return post


async def test_a_lost_commit_answer_is_checked_and_answered_200(make_client: Any,
                                                                postgres_schema: PostgresSchema) -> None:
    proxy = Cutting(WRITE, lose_answer=True)
    await proxy.start()
    try:
        post = poster(await make_client(Settings(jwt_secret=SECRET, database_url=via(postgres_schema, proxy.port))))
        proxy.armed = True  # after the migrations, which commit too
        status, body = await post("u1", "a1")
        assert proxy.fired
        assert (status, body["applied"], body["newScore"]) == (200, True, 10)
        assert rows(postgres_schema, "SELECT action_id FROM {s}.score_events") == [("a1",)]
        assert (await post("u1", "a1"))[1]["applied"] is False
    finally:
        await proxy.stop()


async def test_a_lost_commit_with_the_database_gone_is_never_a_503(make_client: Any,
                                                                  postgres_schema: PostgresSchema) -> None:
    proxy = Cutting(WRITE, lose_answer=True, then_refuse=True)
    await proxy.start()
    try:
        settings = Settings(jwt_secret=SECRET, database_url=via(postgres_schema, proxy.port), db_timeout=1.0)
        post = poster(await make_client(settings))
        proxy.armed = True
        status, body = await post("u1", "a1")
        assert proxy.fired
        assert (status, body["error"]["code"]) == (500, "INTERNAL_ERROR")  # unknown: not "nothing written"
        await proxy.start()
        status, body = await post("u1", "a1")
        assert (status, body["applied"], body["newScore"]) == (200, False, 10)  # it had been committed
    finally:
        await proxy.stop()


@pytest.mark.parametrize("lose_answer", [False, True], ids=["cut-before-it-arrives", "cut-after-it-committed"])
async def test_database_cut_mid_batch_every_caller_200_or_503_then_retry_applies_once(
        make_client: Any, postgres_schema: PostgresSchema, lose_answer: bool) -> None:
    proxy = Cutting(WRITE, after=3, lose_answer=lose_answer)  # the third batch: earlier ones committed
    await proxy.start()
    try:
        settings = Settings(jwt_secret=SECRET, database_url=via(postgres_schema, proxy.port), db_timeout=3.0,
                            rate_limit_user="100000/minute", rate_limit_caller="1000000/minute")
        post = poster(await make_client(settings))
        proxy.armed = True
        work = [(f"u{random.randrange(8)}", uuid4().hex) for _ in range(300)]
        answers = await asyncio.gather(*(post(user, action) for user, action in work))
        assert proxy.fired
        assert {status for status, _ in answers} <= {200, 503}
        if not lose_answer:
            assert any(status == 503 for status, _ in answers), "the cut should have failed some batch"
        await _check_retries(post, work, answers)
    finally:
        await proxy.stop()
    _check_rows(postgres_schema, work)


async def _check_retries(post: Post, work: list[tuple[str, str]], answers: list[tuple[int, Any]]) -> None:
    for (user, action), (status, _) in zip(work, answers, strict=True):
        if status == 503:
            assert await _retry(post, user, action), f"the retry of {action} did not apply it (written before?)"


def _check_rows(postgres_schema: PostgresSchema, work: list[tuple[str, str]]) -> None:
    events = rows(postgres_schema, "SELECT action_id, user_id, delta FROM {s}.score_events")
    assert sorted(a for a, _, _ in events) == sorted(a for _, a in work)  # each exactly once
    totals = {u: sum(d for _, user, d in events if user == u) for _, u, _ in events}
    assert dict(rows(postgres_schema, "SELECT user_id, score FROM {s}.users")) == totals


async def _retry(post: Post, user: str, action: str) -> bool:
    """Retry until answered 200; whether that answer applied the increment."""
    for _ in range(50):  # a pooled connection broken by the cut may fail once more
        status, body = await post(user, action)
        if status == 200:
            return bool(body["applied"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"{action} never succeeded")


async def test_concurrent_duplicates_across_two_processes_apply_once(
        postgres_schema: PostgresSchema, redis_prefix: str, tmp_path: Path) -> None:
    env = environment(DATABASE_URL=postgres_schema.url, REDIS_URL=require_redis(), REDIS_PREFIX=redis_prefix)
    with running(serve_command(), env, tmp_path / "a.log") as one, \
            running(serve_command(), {**env, "AUTO_MIGRATE": "0"}, tmp_path / "b.log") as two:
        action_ids = [uuid4().hex for _ in range(60)]
        async with aiohttp.ClientSession(headers=auth()) as session:
            async def post(server_url: str, action_id: str) -> tuple[int, bool]:
                body = {"userId": f"u{int(action_id, 16) % 5}", "actionId": action_id}
                async with session.post(server_url + "/scores/increment", json=body) as response:
                    return response.status, (await response.json()).get("applied", False)
            answers = await asyncio.gather(*(post(url, a) for a in action_ids for url in (one.url, two.url)))
    assert all(status == 200 for status, _ in answers)
    assert sum(was_applied for _, was_applied in answers) == len(action_ids)  # one of each pair
    events = rows(postgres_schema, "SELECT action_id FROM {s}.score_events")
    assert sorted(a for (a,) in events) == sorted(action_ids)
    scores = dict(rows(postgres_schema, "SELECT user_id, score FROM {s}.users"))
    assert sum(scores.values()) == 10 * len(action_ids)


async def test_the_step_by_step_plan_checks_a_lost_commit_too(postgres_schema: PostgresSchema) -> None:
    await asyncio.to_thread(migrate, postgres_schema.url)
    proxy = Cutting(b"COMMIT\x00", lose_answer=True)  # only the plan sends COMMIT: the one statement needs none
    await proxy.start()
    try:
        async with open_store(via(postgres_schema, proxy.port), 5.0) as store:
            await store.apply_increments([Increment("big", "b0", "x", INT64_MAX - 1, "game-1")])
            proxy.armed = True
            out = await store.apply_increments([Increment("big", "b1", "x", 10, "game-1"),
                                                Increment("u1", "a1", "x", 10, "game-1")])
            assert proxy.fired
            assert isinstance(out[0], ValidationFailed)  # the overflow sent this batch down the plan path
            assert isinstance(out[1], IncrementResult) and (out[1].applied, out[1].new_score) == (True, 10)
    finally:
        await proxy.stop()
    assert rows(postgres_schema, "SELECT action_id FROM {s}.score_events ORDER BY id") == [("b0",), ("a1",)]
