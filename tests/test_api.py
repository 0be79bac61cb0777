"""The HTTP contract of writes and reads, run over every backend pair."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import auth, eventually, top_entries

Client = TestClient[Any, Any]
Post = Callable[..., Awaitable[Any]]


async def test_increment_creates_user_and_applies_server_points(post_increment: Post) -> None:
    status, body = await post_increment("u42", "act-1")
    assert status == 200
    assert body == {"userId": "u42", "actionId": "act-1", "action": "complete", "delta": 10,
                    "newScore": 10, "applied": True}
    status, body = await post_increment("u42", "act-2")
    assert (status, body["newScore"]) == (200, 20)


async def test_named_action_uses_its_points(make_client: Any, settings: Any) -> None:
    from dataclasses import replace

    client = await make_client(replace(settings, actions={"win": 25, "lose": 1}))
    response = await client.post("/scores/increment", json={"userId": "a", "actionId": "x", "action": "lose"},
                                 headers=auth())
    assert (await response.json())["delta"] == 1
    response = await client.post("/scores/increment", json={"userId": "a", "actionId": "y"}, headers=auth())
    assert (await response.json())["delta"] == 25  # the first action is the default


async def test_replay_returns_original_and_changes_nothing(client: Client, post_increment: Post) -> None:
    _, first = await post_increment("u1", "same")
    await post_increment("u1", "other")
    status, replay = await post_increment("u1", "same")
    assert status == 200
    assert replay == {**first, "applied": False}
    score = await (await client.get("/scores/u1")).json()
    assert score["score"] == 20


async def test_actionid_reused_for_other_user_or_action_conflicts(make_client: Any, settings: Any) -> None:
    from dataclasses import replace

    client = await make_client(replace(settings, actions={"complete": 10, "bonus": 5}))
    body = {"userId": "u1", "actionId": "k", "action": "complete"}
    assert (await client.post("/scores/increment", json=body, headers=auth())).status == 200
    for changed in ({"userId": "u2"}, {"action": "bonus"}):
        response = await client.post("/scores/increment", json={**body, **changed}, headers=auth())
        assert response.status == 409
        assert (await response.json())["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert (await (await client.get("/scores/u2")).json())["error"]["code"] == "NOT_FOUND"


async def test_concurrent_increments_for_one_user_sum_exactly(client: Client, post_increment: Post) -> None:
    results = await asyncio.gather(*(post_increment("busy") for _ in range(100)))
    assert [status for status, _ in results] == [200] * 100
    assert sorted(body["newScore"] for _, body in results) == list(range(10, 1001, 10))
    assert (await (await client.get("/scores/busy")).json())["score"] == 1000


async def test_concurrent_duplicates_apply_exactly_once(client: Client, post_increment: Post) -> None:
    results = await asyncio.gather(*(post_increment("dup", "one-action") for _ in range(50)))
    assert {status for status, _ in results} == {200}
    assert sum(body["applied"] for _, body in results) == 1
    assert {body["newScore"] for _, body in results} == {10}
    assert (await (await client.get("/scores/dup")).json())["score"] == 10


async def test_top_orders_by_score_then_who_reached_it_first(client: Client, post_increment: Post) -> None:
    for user in ("early", "late", "high", "high"):
        await post_increment(user)

    async def ranked() -> None:
        assert await top_entries(client) == [(1, "high", None, 20), (2, "early", None, 10), (3, "late", None, 10)]

    await eventually(ranked)
    response = await client.get("/top")
    body = await response.json()
    assert response.headers["ETag"] == f'"{body["version"]}"'
    assert body["generatedAt"].endswith("Z")


async def test_top_limit_is_validated(client: Client, post_increment: Post) -> None:
    for n in range(3):
        await post_increment(f"user{n}")
    assert len((await (await client.get("/top?limit=2")).json())["entries"]) == 2
    for bad in ("0", "51", "abc", "2.5", "-1", ""):
        response = await client.get(f"/top?limit={bad}")
        assert response.status == 400, bad
        body = await response.json()
        assert body["error"]["code"] == "VALIDATION_FAILED"
        assert "limit" in body["error"]["details"]["fields"]


async def test_top_etag_gives_304_until_the_state_changes(client: Client, post_increment: Post) -> None:
    await post_increment("a")

    async def shows_it() -> None:  # /top may lag a push interval: take the ETag of the new state
        assert [user for _, user, _, _ in await top_entries(client)] == ["a"]

    await eventually(shows_it)
    etag = (await client.get("/top")).headers["ETag"]
    unchanged = await client.get("/top", headers={"If-None-Match": etag})
    assert unchanged.status == 304
    assert await unchanged.read() == b""
    await post_increment("a")

    async def changed() -> None:
        response = await client.get("/top", headers={"If-None-Match": etag})
        assert response.status == 200
        assert response.headers["ETag"] != etag

    await eventually(changed)  # the contract allows a push interval of lag


async def test_version_is_the_same_for_the_same_state(make_client: Any, settings: Any, post_increment: Post) -> None:
    await post_increment("a")
    first = await (await make_client(settings)).get("/top")  # a second app on the same storage
    again = await (await make_client(settings)).get("/top")
    assert (await first.json())["version"] == (await again.json())["version"]


async def test_score_with_rank_and_around(client: Client, post_increment: Post) -> None:
    for n in range(1, 6):
        for _ in range(n):
            await post_increment(f"p{n}")  # p5 leads with 50, p1 last with 10
    body = await (await client.get("/scores/p3?around=1")).json()
    assert (body["rank"], body["score"]) == (3, 30)
    assert [(e["rank"], e["userId"]) for e in body["around"]] == [(2, "p4"), (3, "p3"), (4, "p2")]
    top = await (await client.get("/scores/p5?around=2")).json()
    assert [e["rank"] for e in top["around"]] == [1, 2, 3]
    assert "around" not in await (await client.get("/scores/p5")).json()
    for bad in ("26", "-1", "x"):
        assert (await client.get(f"/scores/p5?around={bad}")).status == 400


async def test_unknown_user_is_404(client: Client) -> None:
    response = await client.get("/scores/nobody")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "NOT_FOUND"


async def test_put_user_creates_and_renames(client: Client, post_increment: Post) -> None:
    response = await client.put("/users/u9", json={"displayName": "alice"}, headers=auth())
    assert await response.json() == {"userId": "u9", "displayName": "alice", "score": 0, "rank": 1}
    await post_increment("u9")
    response = await client.put("/users/u9", json={"displayName": "Alice B."}, headers=auth())
    assert await response.json() == {"userId": "u9", "displayName": "Alice B.", "score": 10, "rank": 1}

    async def renamed() -> None:
        assert await top_entries(client) == [(1, "u9", "Alice B.", 10)]

    await eventually(renamed)


async def test_put_user_validates_the_name(client: Client) -> None:
    for bad in ("", "x" * 33, "tab\there", "bell\x07", 5, None):
        response = await client.put("/users/u9", json={"displayName": bad}, headers=auth())
        assert response.status == 400, bad
        assert "displayName" in (await response.json())["error"]["details"]["fields"]


async def test_deleted_user_leaves_reads_and_refuses_increments(client: Client, post_increment: Post) -> None:
    await client.put("/users/gone", json={"displayName": "bob"}, headers=auth())
    _, applied = await post_increment("gone", "before-delete")
    await post_increment("stays")
    response = await client.delete("/users/gone", headers=auth())
    assert response.status == 204
    assert (await client.get("/scores/gone")).status == 404

    async def only_stays() -> None:
        assert [user for _, user, _, _ in await top_entries(client)] == ["stays"]

    await eventually(only_stays)
    status, body = await post_increment("gone")
    assert (status, body["error"]["code"]) == (410, "USER_DELETED")
    response = await client.put("/users/gone", json={"displayName": "bob"}, headers=auth())
    assert response.status == 410
    # A replay of an increment applied before the deletion is still answered from the record.
    assert await post_increment("gone", "before-delete") == (200, {**applied, "applied": False})
    assert (await client.delete("/users/gone", headers=auth())).status == 204


async def test_delete_unknown_user_is_404(client: Client) -> None:
    assert (await client.delete(f"/users/{uuid.uuid4().hex}", headers=auth())).status == 404


async def test_writes_need_their_scope(client: Client) -> None:
    cases = [
        ("POST", "/scores/increment", {"userId": "u", "actionId": "a"}, "users:write users:delete"),
        ("PUT", "/users/u", {"displayName": "x"}, "scores:write users:delete"),
        ("DELETE", "/users/u", None, "scores:write users:write"),
    ]
    for method, path, body, scopes in cases:
        response = await client.request(method, path, json=body, headers=auth(scopes))
        assert response.status == 403, path
        assert (await response.json())["error"]["code"] == "FORBIDDEN"
    assert (await client.get("/scores/u")).status == 404  # nothing was written
