"""A load under which faults are injected, and the checks every fault scenario ends with.

Clients increment and retry every non-200 with the same actionId (as a real game backend
would), a poller reads GET /scores for every committed user, and a stream watcher checks
that no pushed score ever goes down. At the end the database is checked row by row.
"""
from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from types import TracebackType
from typing import Any

import aiohttp
import psycopg2
from aiohttp.test_utils import TestClient

from tests.conftest import PostgresSchema, auth, eventually
from tests.sse import SSEReader

USERS = [f"p{i}" for i in range(6)]  # fewer than 10: every user is in every push
CLIENTS = 4
ATTEMPTS = 400  # retries of one actionId before a client gives up (a failure of the test)
RETRY_PAUSE = 0.05
WAIT = 30.0  # generous deadline for any condition


class Load:
    def __init__(self, client: TestClient[Any, Any], reader: TestClient[Any, Any] | None = None) -> None:
        self.client = client
        self.reader = reader or client  # another process may serve the reads and the stream
        self.expected: Counter[str] = Counter()  # points per user, from 200 answers
        self.committed = 0
        self.statuses: Counter[int] = Counter()  # increment answers (0: connection error)
        self.read_statuses: Counter[int] = Counter()
        self.committed_but_503 = 0  # a 503 whose retry found the increment applied
        self.pushes = 0
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._streaming = asyncio.Event()

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._increment(i)) for i in range(CLIENTS)]
        self._tasks += [asyncio.create_task(self._poll()), asyncio.create_task(self._watch())]
        try:
            async with asyncio.timeout(WAIT):
                await self._streaming.wait()
            await self.until_committed(10)
        except BaseException:
            await self._end()
            raise
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
                        ) -> None:
        await self._end()

    async def _end(self) -> None:
        """Let every action in flight finish (it is retried until answered), then stop."""
        self._stop.set()
        try:
            async with asyncio.timeout(WAIT * 2):
                await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()

    async def until_committed(self, more: int) -> None:
        """Wait until `more` further increments have been answered 200."""
        target = self.committed + more
        async with asyncio.timeout(WAIT):
            while self.committed < target:
                self._progress.clear()
                await self._progress.wait()

    async def until(self, status: int, count: int) -> None:
        """Wait until `count` increments in all were answered `status`."""
        async with asyncio.timeout(WAIT):
            while self.statuses[status] < count:
                self._progress.clear()
                await self._progress.wait()

    async def _increment(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            await self._one_action(rng.choice(USERS), uuid.uuid4().hex)

    async def _one_action(self, user: str, action_id: str) -> None:
        saw_503 = False
        for _ in range(ATTEMPTS):
            status, body = await self._post(user, action_id)
            self.statuses[status] += 1
            self._progress.set()
            if status == 200:
                self.committed_but_503 += saw_503 and not body["applied"]
                self.expected[user] += 10
                self.committed += 1
                return
            if status not in (0, 503):
                self.errors.append(f"increment answered {status}: {body}")
                return
            saw_503 = True
            await asyncio.sleep(RETRY_PAUSE)  # the client's own retry pause
        self.errors.append(f"gave up on {action_id}")

    async def _post(self, user: str, action_id: str) -> tuple[int, Any]:
        try:
            response = await self.client.post("/scores/increment", json={"userId": user, "actionId": action_id},
                                              headers=auth())
            return response.status, await response.json()
        except aiohttp.ClientError:
            return 0, None

    async def _poll(self) -> None:
        """Every committed user reads as 200 (or 503 while the database is away), never lower than before."""
        seen: dict[str, int] = {}
        while not self._stop.is_set():
            for user in [u for u in USERS if self.expected[u]]:
                response = await self.reader.get(f"/scores/{user}")
                self.read_statuses[response.status] += 1
                if response.status == 200:
                    score = (await response.json())["score"]
                    if score < seen.get(user, 0):
                        self.errors.append(f"GET /scores/{user} went back from {seen[user]} to {score}")
                    seen[user] = max(seen.get(user, 0), score)
                elif response.status != 503:
                    self.errors.append(f"GET /scores/{user} of a committed user answered {response.status}")
            await self._poll_top(seen)
            await asyncio.sleep(0.01)

    async def _poll_top(self, seen: dict[str, int]) -> None:
        """GET /top?limit=50 (the read model itself, not the hub's copy) holds every committed user."""
        committed = {user for user in USERS if self.expected[user]}
        response = await self.reader.get("/top", params={"limit": "50"})
        self.read_statuses[response.status] += 1
        if response.status != 200:
            return
        scores = {e["userId"]: e["score"] for e in (await response.json())["entries"]}
        if missing := committed - set(scores):
            self.errors.append(f"GET /top lacks committed users {sorted(missing)}")
        if behind := {user: score for user, score in scores.items() if user in USERS and score < seen.get(user, 0)}:
            self.errors.append(f"GET /top went back for {behind}")

    async def _watch(self) -> None:
        async with self.reader.get("/stream") as response:
            reader = SSEReader(response.content)
            last: dict[str, int] = {}
            self._check_push(await reader.event(WAIT), last)
            self._streaming.set()
            while not self._stop.is_set():
                try:
                    self._check_push(await reader.event(0.2), last)
                except TimeoutError:
                    continue

    def _check_push(self, event: Any, last: dict[str, int]) -> None:
        self.pushes += 1
        entries = [entry for entry in event.entries() if entry[1] in USERS]
        if missing := set(last) - {user for _, user, _, _ in entries}:  # nobody is deleted under this load
            self.errors.append(f"push {event.id}: {sorted(missing)} left the top 10")
        for _, user, _, score in entries:
            if user in last and score < last[user]:
                self.errors.append(f"push {event.id}: {user} went back from {last[user]} to {score}")
            last[user] = max(last.get(user, score), score)

    async def settle_and_check(self, schema: PostgresSchema) -> None:
        """No contract broken under load; then the reads and the database agree, row by row."""
        assert self.errors == [], self.errors[:5]
        assert set(self.statuses) <= {200, 503, 0}, self.statuses
        assert set(self.read_statuses) <= {200, 503}, self.read_statuses
        expected = {user: points for user, points in self.expected.items() if points}

        async def settled() -> None:
            for client in {self.client, self.reader}:
                for user, points in expected.items():
                    body = await (await client.get(f"/scores/{user}")).json()
                    assert body.get("score") == points, (user, body)
                top = await (await client.get("/top", params={"limit": "50"})).json()
                assert {e["userId"]: e["score"] for e in top["entries"] if e["userId"] in USERS} == expected

        await eventually(settled, WAIT)
        rows = {user: row for user, row in database_rows(schema).items() if user in USERS}
        assert rows == {user: (points, points // 10) for user, points in expected.items()}


def database_rows(schema: PostgresSchema) -> dict[str, tuple[int, int]]:
    """user -> (score, number of score events), straight from PostgreSQL."""
    conn = psycopg2.connect(schema.base_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"""SELECT u.user_id, u.score, (SELECT count(*) FROM {schema.name}.score_events e
                            WHERE e.user_id = u.user_id) FROM {schema.name}.users u""")
            return {row[0]: (int(row[1]), int(row[2])) for row in cur.fetchall()}
    finally:
        conn.close()
